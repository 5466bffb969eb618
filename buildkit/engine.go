package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	opspb "github.com/moby/buildkit/solver/pb"
)

// engine is the Docker-compatible API the builds go to.
type engine struct {
	http *http.Client

	once sync.Once
	plat opspb.Platform
}

func newEngine(socket string) *engine {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}
	return &engine{http: &http.Client{Transport: tr}}
}

// apiBase: the engine is reached over a unix socket; the host name is unused.
const apiBase = "http://engine/v1.41"

func (e *engine) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiBase+path, nil)
	if err != nil {
		return err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, 16<<20)
	if resp.StatusCode != http.StatusOK {
		return engineError(resp.StatusCode, body)
	}
	return json.NewDecoder(body).Decode(v)
}

// engineError reads the engine's {"message": ...} error answer.
func engineError(code int, body io.Reader) error {
	var m struct {
		Message string `json:"message"`
	}
	if err := json.NewDecoder(io.LimitReader(body, 64<<10)).Decode(&m); err != nil || m.Message == "" {
		return fmt.Errorf("engine answered %d", code)
	}
	return fmt.Errorf("engine answered %d: %s", code, m.Message)
}

// platform is the engine's own (the guest's), asked once.
func (e *engine) platform(ctx context.Context) opspb.Platform {
	e.once.Do(func() {
		var v struct{ Os, Arch string }
		e.plat = opspb.Platform{OS: "linux", Architecture: "amd64"}
		if err := e.getJSON(ctx, "/version", &v); err == nil && v.Os != "" && v.Arch != "" {
			e.plat = opspb.Platform{OS: v.Os, Architecture: v.Arch}
		}
	})
	return e.plat
}

// imageID is the ID of the image the engine knows as name.
func (e *engine) imageID(ctx context.Context, name string) (string, error) {
	var img struct{ Id string }
	if err := e.getJSON(ctx, "/images/"+url.PathEscape(name)+"/json", &img); err != nil {
		return "", err
	}
	return normalizeID(img.Id), nil
}

func normalizeID(id string) string {
	return "sha256:" + strings.TrimPrefix(id, "sha256:")
}

// buildMessage is one object of the engine's streamed build answer.
type buildMessage struct {
	Stream      string `json:"stream"`
	Status      string `json:"status"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	Aux *struct {
		ID string `json:"ID"`
	} `json:"aux"`
}

// BuildError is the engine's build failure, as the engine words it.
type BuildError struct{ Message string }

func (e *BuildError) Error() string { return e.Message }

// build sends the context tar (with the query's options) to the engine's
// POST /build and returns the built image's ID. Output goes to out as it
// comes; the outcome is the engine's error message or the image ID it
// reports, which is then looked up in the engine.
func (e *engine) build(ctx context.Context, query url.Values, tarball io.Reader, out func(string)) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiBase+"/build?"+query.Encode(), tarball)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := e.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("cannot reach the engine: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", engineError(resp.StatusCode, resp.Body)
	}
	id, err := readBuildStream(resp.Body, out)
	if err != nil {
		return "", err
	}
	got, err := e.imageID(ctx, id)
	if err != nil {
		return "", fmt.Errorf("the engine reported image %s, but it is not there: %w", id, err)
	}
	return got, nil
}

// plainStream takes off the red the engine wraps a RUN step's stderr in
// (as Docker's classic builder does): BuildKit's progress is plain text,
// and the reset after the newline would start the next step's line.
var plainStream = strings.NewReplacer("\x1b[91m", "", "\x1b[0m", "")

// readBuildStream reads the engine's JSON messages: output to out, and the
// image ID (aux.ID) or the error the engine ends with.
func readBuildStream(r io.Reader, out func(string)) (string, error) {
	dec := json.NewDecoder(r)
	id := ""
	for {
		var m buildMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", fmt.Errorf("reading the engine's build output: %w", err)
		}
		if m.Stream != "" {
			out(plainStream.Replace(m.Stream))
		}
		if m.Status != "" {
			out(m.Status + "\n")
		}
		if m.Error != "" || m.ErrorDetail != nil {
			msg := m.Error
			if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
				msg = m.ErrorDetail.Message
			}
			return "", &BuildError{Message: strings.TrimSpace(msg)}
		}
		if m.Aux != nil && m.Aux.ID != "" {
			id = m.Aux.ID
		}
	}
	if id == "" {
		return "", errors.New("the engine's build ended without an image ID or an error")
	}
	return normalizeID(id), nil
}
