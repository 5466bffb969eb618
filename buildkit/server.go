package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	controlapi "github.com/moby/buildkit/api/services/control"
	apitypes "github.com/moby/buildkit/api/types"
	"github.com/moby/buildkit/client/buildid"
	gwpb "github.com/moby/buildkit/frontend/gateway/pb"
	"github.com/moby/buildkit/session"
	opspb "github.com/moby/buildkit/solver/pb"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// version is what Info and ListWorkers report as the BuildKit version.
const version = "v0.13.2-skiff"

type server struct {
	engine   *engine
	sessions *session.Manager
	grpc     *grpc.Server
	h2       *http2.Server

	mu   sync.Mutex
	jobs map[string]*job
}

func newServer(e *engine) (*server, error) {
	sm, err := session.NewManager()
	if err != nil {
		return nil, err
	}
	s := &server{engine: e, sessions: sm, jobs: map[string]*job{}, h2: &http2.Server{}}
	s.grpc = grpc.NewServer()
	controlapi.RegisterControlServer(s.grpc, &control{server: s})
	gwpb.RegisterLLBBridgeServer(s.grpc, &gateway{server: s})
	return s, nil
}

// serveGRPC answers `POST /grpc` with `Upgrade: h2c` as dockerd does: 101,
// then HTTP/2 without TLS on the same connection, carrying gRPC.
func (s *server) serveGRPC(w http.ResponseWriter, r *http.Request) {
	if proto := r.Header.Get("Upgrade"); proto != "h2c" {
		http.Error(w, fmt.Sprintf("upgrade to %q is not supported (h2c only)", proto), http.StatusBadRequest)
		return
	}
	h, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return
	}
	conn, buf, err := h.Hijack()
	if err != nil {
		log.Printf("grpc: hijack: %v", err)
		return
	}
	defer conn.Close()
	if _, err := buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"); err != nil {
		return
	}
	if err := buf.Flush(); err != nil {
		return
	}
	s.h2.ServeConn(&bufferedConn{Conn: conn, r: buf.Reader}, &http2.ServeConnOpts{Handler: s.grpc})
}

// control is BuildKit's Control API (moby.buildkit.v1.Control).
type control struct {
	controlapi.UnimplementedControlServer
	*server
}

// gateway is the frontend gateway (moby.buildkit.v1.frontend.LLBBridge)
// that buildx's Build function talks to.
type gateway struct {
	gwpb.UnimplementedLLBBridgeServer
	*server
}

// worker is the one worker this builder has: the engine.
func (s *server) worker(ctx context.Context) *apitypes.WorkerRecord {
	return &apitypes.WorkerRecord{
		ID:              "skiff-engine",
		Labels:          map[string]string{"org.mobyproject.buildkit.worker.executor": "podman"},
		Platforms:       []opspb.Platform{s.engine.platform(ctx)},
		BuildkitVersion: &apitypes.BuildkitVersion{Package: "github.com/skiff/buildkit", Version: version},
	}
}

func (s *control) ListWorkers(ctx context.Context, _ *controlapi.ListWorkersRequest) (*controlapi.ListWorkersResponse, error) {
	return &controlapi.ListWorkersResponse{Record: []*apitypes.WorkerRecord{s.worker(ctx)}}, nil
}

func (s *control) Info(context.Context, *controlapi.InfoRequest) (*controlapi.InfoResponse, error) {
	return &controlapi.InfoResponse{BuildkitVersion: &apitypes.BuildkitVersion{Package: "github.com/skiff/buildkit", Version: version}}, nil
}

// DiskUsage: the build cache is the engine's (its image layers), not ours.
func (s *control) DiskUsage(context.Context, *controlapi.DiskUsageRequest) (*controlapi.DiskUsageResponse, error) {
	return &controlapi.DiskUsageResponse{}, nil
}

// Prune: nothing of ours to prune (`docker builder prune` ends at once).
func (s *control) Prune(*controlapi.PruneRequest, controlapi.Control_PruneServer) error {
	return nil
}

// job is one Solve, found by its ref from Status and from the gateway
// calls (which carry the ref as the build id).
type job struct {
	ref     string
	ready   chan struct{} // closed once Solve has filled the fields below
	req     *controlapi.SolveRequest
	result  chan *gwpb.ReturnRequest
	imageID string // set by the gateway's Solve
	status  *progress
}

// job returns the job of ref, creating it if Status or the gateway come first.
func (s *server) job(ref string) *job {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[ref]
	if !ok {
		j = &job{ref: ref, ready: make(chan struct{}), result: make(chan *gwpb.ReturnRequest, 1), status: newProgress(ref)}
		s.jobs[ref] = j
	}
	return j
}

// forget drops a finished job after a while (late Status calls still see it).
func (s *server) forget(ref string) {
	time.AfterFunc(time.Minute, func() {
		s.mu.Lock()
		delete(s.jobs, ref)
		s.mu.Unlock()
	})
}

// started waits for the job's Solve to arrive.
func (s *server) started(ctx context.Context, ref string) (*job, error) {
	if ref == "" {
		return nil, status.Error(codes.InvalidArgument, "no build id in the request")
	}
	j := s.job(ref)
	select {
	case <-j.ready:
		return j, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		s.forget(ref)
		return nil, status.Errorf(codes.NotFound, "no build %s", ref)
	}
}

func (s *control) Solve(ctx context.Context, req *controlapi.SolveRequest) (*controlapi.SolveResponse, error) {
	j := s.job(req.Ref)
	defer s.forget(req.Ref)
	select {
	case <-j.ready:
		return nil, status.Errorf(codes.AlreadyExists, "build %s already exists", req.Ref)
	default:
	}
	j.req = req
	close(j.ready)
	resp, err := s.solve(ctx, j)
	if err != nil {
		j.status.fail(err)
	}
	j.status.close()
	return resp, err
}

func (s *control) solve(ctx context.Context, j *job) (*controlapi.SolveResponse, error) {
	req := j.req
	if req.Frontend != "" || req.Definition != nil {
		// buildx and compose use the Build interface (Frontend empty, the
		// Dockerfile frontend called through the gateway); an LLB definition
		// or a direct frontend would need BuildKit's own solver.
		return nil, status.Errorf(codes.Unimplemented, "Skiff's builder runs Dockerfile builds through the gateway only (got frontend %q)", req.Frontend)
	}
	var ret *gwpb.ReturnRequest
	select {
	case ret = <-j.result:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if ret.Error != nil && ret.Error.Code != 0 {
		return nil, status.Error(codes.Code(ret.Error.Code), ret.Error.Message)
	}
	if req.Internal && j.imageID == "" {
		// buildx's probe for the gateway's options: nothing was built.
		return &controlapi.SolveResponse{}, nil
	}
	return s.export(ctx, j)
}

// exporters lists the Solve's exporters (old clients set only the deprecated pair).
func exporters(req *controlapi.SolveRequest) []*controlapi.Exporter {
	if len(req.Exporters) > 0 {
		return req.Exporters
	}
	if req.ExporterDeprecated != "" {
		return []*controlapi.Exporter{{Type: req.ExporterDeprecated, Attrs: req.ExporterAttrsDeprecated}}
	}
	return nil
}

// imageNames are the names the Solve asks the image to get ("name" of the
// moby/image exporter, comma-separated), and an error for exporters the
// engine cannot serve.
func imageNames(req *controlapi.SolveRequest) ([]string, error) {
	var names []string
	for _, e := range exporters(req) {
		switch e.Type {
		case "moby", "image", "docker":
			if e.Attrs["push"] == "true" {
				return nil, fmt.Errorf("pushing from a build is not supported by Skiff's builder: build, then `docker push`")
			}
			for _, n := range strings.Split(e.Attrs["name"], ",") {
				if n = strings.TrimSpace(n); n != "" {
					names = append(names, n)
				}
			}
		default:
			return nil, fmt.Errorf("the %q exporter is not supported by Skiff's builder (the image goes to the engine; `docker save` exports it)", e.Type)
		}
	}
	return names, nil
}

// export checks the built image is in the engine under every name asked for.
func (s *control) export(ctx context.Context, j *job) (*controlapi.SolveResponse, error) {
	names, err := imageNames(j.req)
	if err != nil {
		return nil, status.Error(codes.Unimplemented, err.Error())
	}
	if j.imageID == "" {
		return nil, status.Error(codes.Internal, "the build returned no image")
	}
	v := j.status.internal("exporting to image")
	for _, n := range names {
		id, err := s.engine.imageID(ctx, n)
		if err != nil {
			j.status.done(v, err)
			return nil, status.Errorf(codes.Internal, "the image is not in the engine as %s: %v", n, err)
		}
		if id != j.imageID {
			err := fmt.Errorf("%s names %s, not the built image %s", n, id, j.imageID)
			j.status.done(v, err)
			return nil, status.Error(codes.Internal, err.Error())
		}
		j.status.log(v, fmt.Sprintf("naming to %s done\n", n))
	}
	j.status.log(v, fmt.Sprintf("writing image %s done\n", j.imageID))
	j.status.done(v, nil)
	resp := map[string]string{"containerimage.digest": j.imageID, "containerimage.config.digest": j.imageID}
	if len(names) > 0 {
		resp["image.name"] = strings.Join(names, ",")
	}
	return &controlapi.SolveResponse{ExporterResponse: resp}, nil
}

func (s *control) Status(req *controlapi.StatusRequest, stream controlapi.Control_StatusServer) error {
	j := s.job(req.Ref)
	err := j.status.stream(stream.Context(), stream.Send)
	select {
	case <-j.ready:
	default:
		// Asked about a build that never came: not kept.
		s.forget(req.Ref)
	}
	return err
}

// Ping: every capability of this BuildKit version is claimed; what buildx
// and compose use is answered, the rest fails with a clear error.
func (s *gateway) Ping(ctx context.Context, _ *gwpb.PingRequest) (*gwpb.PongResponse, error) {
	return &gwpb.PongResponse{
		FrontendAPICaps: gwpb.Caps.All(),
		LLBCaps:         opspb.Caps.All(),
		Workers:         []*apitypes.WorkerRecord{s.worker(ctx)},
	}, nil
}

func (s *gateway) Return(ctx context.Context, req *gwpb.ReturnRequest) (*gwpb.ReturnResponse, error) {
	j, err := s.started(ctx, buildid.FromIncomingContext(ctx))
	if err != nil {
		return nil, err
	}
	select {
	case j.result <- req:
	default:
		return nil, status.Error(codes.AlreadyExists, "the build has already returned")
	}
	return &gwpb.ReturnResponse{}, nil
}

func (s *gateway) Inputs(context.Context, *gwpb.InputsRequest) (*gwpb.InputsResponse, error) {
	return &gwpb.InputsResponse{}, nil
}

func (s *gateway) Warn(context.Context, *gwpb.WarnRequest) (*gwpb.WarnResponse, error) {
	return &gwpb.WarnResponse{}, nil
}

// bufferedConn is a hijacked connection whose reads first drain what the
// HTTP server had already buffered.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
