package main

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	controlapi "github.com/moby/buildkit/api/services/control"
)

func TestStepNames(t *testing.T) {
	stages := map[string]string{}
	for _, c := range []struct{ line, want string }{
		{"STEP 1/2: FROM skiff-test/busybox", "[1/2] FROM skiff-test/busybox"},
		{"STEP 2/2: RUN --mount=type=cache,target=/c x", "[2/2] RUN --mount=type=cache,target=/c x"},
		{"[1/3] STEP 1/3: FROM busybox AS builder", "[builder 1/3] FROM busybox AS builder"},
		{"[1/3] STEP 2/3: RUN make", "[builder 2/3] RUN make"},
		{"[2/3] STEP 1/2: FROM busybox", "[stage-2 1/2] FROM busybox"},
		{"[3/3] STEP 1/2: from builder as Final", "[Final 1/2] from builder as Final"},
		{"[3/3] STEP 2/2: COPY --from=builder /a /a", "[Final 2/2] COPY --from=builder /a /a"},
	} {
		got, ok := stepName(c.line, stages)
		if !ok || got != c.want {
			t.Errorf("stepName(%q) = %q, %v; want %q", c.line, got, ok, c.want)
		}
	}
	for _, line := range []string{"--> 1234abcd", "COMMIT app", "hello STEP 1/2: x", ""} {
		if got, ok := stepName(line, stages); ok {
			t.Errorf("stepName(%q) = %q, want no step", line, got)
		}
	}
}

// The engine's output, split at any byte, becomes one vertex per step
// with its lines as logs; the failing step carries the error.
func TestEngineOutputBecomesVertexes(t *testing.T) {
	p := newProgress("ref1")
	out := "STEP 1/3: FROM skiff-test/busybox\nSTEP 2/3: RUN echo hi\nhi\n--> Using cache 1234\nSTEP 3/3: RUN exit 3\nsome output"
	for i := 0; i < len(out); i += 7 {
		p.engineOutput(out[i:min(i+7, len(out))])
	}
	if got := p.currentStep(); got != "[3/3] RUN exit 3" {
		t.Fatalf("current step %q", got)
	}
	p.fail(errors.New("boom"))
	p.close()
	want := []string{"[1/3] FROM skiff-test/busybox", "[2/3] RUN echo hi", "[3/3] RUN exit 3"}
	if got := p.vertexNames(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("vertexes %q, want %q", got, want)
	}

	var final = map[string]*controlapi.Vertex{}
	logs := map[string]string{}
	names := map[string]string{}
	err := p.stream(context.Background(), func(r *controlapi.StatusResponse) error {
		for _, v := range r.Vertexes {
			final[v.Name] = v
			names[string(v.Digest)] = v.Name
		}
		for _, l := range r.Logs {
			logs[names[string(l.Vertex)]] += string(l.Msg)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if logs["[2/3] RUN echo hi"] != "hi\n--> Using cache 1234\n" {
		t.Errorf("step 2 log %q", logs["[2/3] RUN echo hi"])
	}
	if !final["[2/3] RUN echo hi"].Cached {
		t.Error("step 2 not marked cached")
	}
	if logs["[3/3] RUN exit 3"] != "some output\n" {
		t.Errorf("step 3 log %q", logs["[3/3] RUN exit 3"])
	}
	for name, v := range final {
		if v.Completed == nil {
			t.Errorf("%s left open", name)
		}
		if wantErr := name == "[3/3] RUN exit 3"; (v.Error != "") != wantErr {
			t.Errorf("%s error %q", name, v.Error)
		}
	}
}

func TestStatusStreamWaitsForTheBuild(t *testing.T) {
	p := newProgress("ref2")
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- p.stream(context.Background(), func(r *controlapi.StatusResponse) error {
			for _, v := range r.Vertexes {
				got <- v.Name
			}
			return nil
		})
	}()
	v := p.internal("[internal] load build context")
	if n := <-got; n != "[internal] load build context" {
		t.Fatalf("got %q", n)
	}
	p.done(v, nil)
	p.close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestReadBuildStream(t *testing.T) {
	var out strings.Builder
	id, err := readBuildStream(strings.NewReader(`{"stream":"STEP 1/1: FROM x\n"}{"stream":"\u001b[91merr\n\u001b[0m"}{"aux":{"ID":"sha256:abc"}}{"stream":"Successfully built abc\n"}`), func(s string) { out.WriteString(s) })
	if err != nil || id != "sha256:abc" {
		t.Fatalf("id %q err %v", id, err)
	}
	// stderr's red is taken off: the next line starts clean.
	if got := out.String(); got != "STEP 1/1: FROM x\nerr\nSuccessfully built abc\n" {
		t.Fatalf("output %q", got)
	}
	_, err = readBuildStream(strings.NewReader(`{"stream":"STEP 2/2: RUN false\n"}{"error":"x","errorDetail":{"message":"building at STEP \"RUN false\": exit status 1"}}`), func(string) {})
	var be *BuildError
	if !errors.As(err, &be) || !strings.Contains(be.Message, `STEP "RUN false"`) {
		t.Fatalf("err %v", err)
	}
	if _, err := readBuildStream(strings.NewReader(`{"stream":"x\n"}`), func(string) {}); err == nil {
		t.Fatal("a stream with no ID and no error must fail")
	}
}

func TestBuildOptions(t *testing.T) {
	q, err := buildOptions(map[string]string{
		"build-arg:GREETING":        "hi",
		"build-arg:BUILDKIT_SYNTAX": "docker/dockerfile:1",
		"label:a":                   "b",
		"target":                    "final",
		"filename":                  "Dockerfile.app",
		"image-resolve-mode":        "default",
	}, []string{"app", "app:v2"})
	if err != nil {
		t.Fatal(err)
	}
	want := url.Values{
		"buildargs": {`{"GREETING":"hi"}`}, "labels": {`{"a":"b"}`}, "target": {"final"},
		"t": {"app", "app:v2"}, "rm": {"1"},
	}
	if q.Encode() != want.Encode() {
		t.Fatalf("got %s\nwant %s", q.Encode(), want.Encode())
	}
	if _, err := buildOptions(map[string]string{"context:base": "docker-image://x"}, nil); err == nil {
		t.Fatal("named contexts must be refused")
	}
}

func TestImageNames(t *testing.T) {
	req := &controlapi.SolveRequest{Exporters: []*controlapi.Exporter{{Type: "moby", Attrs: map[string]string{"name": "app,docker.io/library/app:v2"}}}}
	names, err := imageNames(req)
	if err != nil || strings.Join(names, "|") != "app|docker.io/library/app:v2" {
		t.Fatalf("%q %v", names, err)
	}
	if _, err := imageNames(&controlapi.SolveRequest{ExporterDeprecated: "local"}); err == nil {
		t.Fatal("the local exporter must be refused")
	}
}

func TestPlaceDockerfile(t *testing.T) {
	dir := t.TempDir()
	df := []byte("FROM x\n")
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o600); err != nil {
		t.Fatal(err)
	}
	bc, err := placeDockerfile(dir, "Dockerfile", df, nil)
	if err != nil || bc.dockerfile != "Dockerfile" || bc.extra != nil {
		t.Fatalf("the context's own Dockerfile: %+v %v", bc, err)
	}
	// From elsewhere (-f ../x, stdin): carried beside the context, kept out of COPY.
	bc, err = placeDockerfile(dir, "../build/App.Dockerfile", []byte("FROM y\n"), []byte("secret.txt"))
	if err != nil || bc.dockerfile != injectedDockerfile {
		t.Fatalf("%+v %v", bc, err)
	}
	if got := string(bc.extra[".dockerignore"]); got != "secret.txt\n/"+injectedDockerfile+"\n" {
		t.Fatalf(".dockerignore %q", got)
	}
}
