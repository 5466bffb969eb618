package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	controlapi "github.com/moby/buildkit/api/services/control"
	digest "github.com/opencontainers/go-digest"
)

// progress is one build's status as BuildKit reports it: vertexes (one per
// Dockerfile step, plus internal ones) with their logs. Every update is kept
// and sent, in order, to each Status stream of the build.
type progress struct {
	ref string

	mu       sync.Mutex
	events   []*controlapi.StatusResponse
	changed  chan struct{}
	closed   bool
	vertexes map[digest.Digest]*controlapi.Vertex
	order    []digest.Digest
	// current is the step the engine's output belongs to ("" before the first).
	current digest.Digest
	// partial is engine output not yet ended by a newline.
	partial string
	// stages names the stages of a multi-stage build by number.
	stages map[string]string
}

func newProgress(ref string) *progress {
	return &progress{ref: ref, changed: make(chan struct{}), vertexes: map[digest.Digest]*controlapi.Vertex{}, stages: map[string]string{}}
}

// now is the clock of the vertexes (a variable for the tests).
var now = time.Now

// emit records an update and wakes the streams; mu held.
func (p *progress) emit(r *controlapi.StatusResponse) {
	if p.closed {
		return
	}
	p.events = append(p.events, r)
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *progress) vertexUpdate(v *controlapi.Vertex) *controlapi.StatusResponse {
	c := *v
	return &controlapi.StatusResponse{Vertexes: []*controlapi.Vertex{&c}}
}

// start opens a vertex named name; mu held.
func (p *progress) start(name string) digest.Digest {
	d := digest.FromString(fmt.Sprintf("%s/%d/%s", p.ref, len(p.order), name))
	t := now()
	v := &controlapi.Vertex{Digest: d, Name: name, Started: &t}
	if n := len(p.order); n > 0 {
		v.Inputs = []digest.Digest{p.order[n-1]}
	}
	p.vertexes[d] = v
	p.order = append(p.order, d)
	p.emit(p.vertexUpdate(v))
	return d
}

// finish completes a vertex (with err, if any) unless it is complete; mu held.
func (p *progress) finish(d digest.Digest, err error) {
	v, ok := p.vertexes[d]
	if !ok || v.Completed != nil {
		return
	}
	t := now()
	v.Completed = &t
	if err != nil {
		v.Error = err.Error()
	}
	p.emit(p.vertexUpdate(v))
}

// logLocked adds msg to the vertex's log; mu held.
func (p *progress) logLocked(d digest.Digest, msg string) {
	if _, ok := p.vertexes[d]; !ok || msg == "" {
		return
	}
	p.emit(&controlapi.StatusResponse{Logs: []*controlapi.VertexLog{{Vertex: d, Timestamp: now(), Stream: 1, Msg: []byte(msg)}}})
}

// internal opens a vertex of our own ("[internal] ..." style names).
func (p *progress) internal(name string) digest.Digest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.start(name)
}

func (p *progress) log(d digest.Digest, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logLocked(d, msg)
}

func (p *progress) done(d digest.Digest, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finish(d, err)
}

// engineOutput takes a piece of the engine's build output (text, split
// anywhere) and turns each finished line into progress: a step line opens
// the step's vertex, other lines are its log. Display only: whether the
// build failed comes from the engine's error message, not from this text.
func (p *progress) engineOutput(text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	text = p.partial + text
	lines := strings.SplitAfter(text, "\n")
	p.partial = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		p.engineLine(l)
	}
}

// engineLine handles one line (with its newline); mu held.
func (p *progress) engineLine(line string) {
	if name, ok := stepName(strings.TrimRight(line, "\r\n"), p.stages); ok {
		if p.current != "" {
			p.finish(p.current, nil)
		}
		p.current = p.start(name)
		return
	}
	if p.current == "" {
		p.current = p.start("[internal] engine build")
	}
	if strings.HasPrefix(line, "--> Using cache ") {
		if v := p.vertexes[p.current]; v != nil && !v.Cached {
			v.Cached = true
			p.emit(p.vertexUpdate(v))
		}
	}
	p.logLocked(p.current, line)
}

// stepLine is Buildah's step heading: "STEP 2/3: RUN make", in a
// multi-stage build "[1/2] STEP 2/3: RUN make" (stage 1 of 2).
var stepLine = regexp.MustCompile(`^(?:\[(\d+)/\d+\] )?STEP (\d+/\d+): (.*)$`)

// fromAs is a stage's FROM line that names it.
var fromAs = regexp.MustCompile(`(?i)^FROM\s+\S+\s+AS\s+(\S+)\s*$`)

// stepName turns a step heading into BuildKit's vertex name: "[2/3] RUN
// make", or in a multi-stage build "[builder 2/3] RUN make" (the stage's
// name, which stages keeps from its FROM line; "stage-N" if unnamed).
func stepName(line string, stages map[string]string) (string, bool) {
	m := stepLine.FindStringSubmatch(line)
	if m == nil {
		return "", false
	}
	if m[1] == "" {
		return fmt.Sprintf("[%s] %s", m[2], m[3]), true
	}
	if as := fromAs.FindStringSubmatch(m[3]); as != nil {
		stages[m[1]] = as[1]
	}
	stage, ok := stages[m[1]]
	if !ok {
		stage = "stage-" + m[1]
	}
	return fmt.Sprintf("[%s %s] %s", stage, m[2], m[3]), true
}

// fail ends the build's open vertexes: the step running when the engine
// failed gets the error, so the user sees which step it was.
func (p *progress) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.partial != "" {
		p.engineLine(p.partial + "\n")
		p.partial = ""
	}
	failed := false
	for i := len(p.order) - 1; i >= 0; i-- {
		if v := p.vertexes[p.order[i]]; v.Completed == nil {
			if !failed {
				p.finish(v.Digest, err)
				failed = true
			} else {
				p.finish(v.Digest, nil)
			}
		}
	}
}

// close completes what is still open and ends the Status streams.
func (p *progress) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flushPartial()
	for _, d := range p.order {
		p.finish(d, nil)
	}
	p.closed = true
	close(p.changed)
	p.changed = make(chan struct{})
}

// stream sends every update, from the first, until the build ends.
func (p *progress) stream(ctx context.Context, send func(*controlapi.StatusResponse) error) error {
	next := 0
	for {
		p.mu.Lock()
		pending := p.events[next:]
		next = len(p.events)
		closed, changed := p.closed, p.changed
		p.mu.Unlock()
		for _, r := range pending {
			if err := send(r); err != nil {
				return err
			}
		}
		if len(pending) > 0 {
			continue
		}
		if closed {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// vertexNames lists the vertexes in the order they started (for tests).
func (p *progress) vertexNames() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for _, d := range p.order {
		names = append(names, p.vertexes[d].Name)
	}
	return names
}

// currentStep is the name of the step the engine was at ("" before any).
func (p *progress) currentStep() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v := p.vertexes[p.current]; v != nil && !strings.HasPrefix(v.Name, "[internal]") {
		return v.Name
	}
	return ""
}

// endSteps completes the engine's steps once its build succeeded.
func (p *progress) endSteps() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flushPartial()
	if p.current != "" {
		p.finish(p.current, nil)
		p.current = ""
	}
}

// flushPartial hands on an engine line that arrived without its newline;
// the caller holds p.mu.
func (p *progress) flushPartial() {
	if p.partial != "" {
		p.engineLine(p.partial + "\n")
		p.partial = ""
	}
}
