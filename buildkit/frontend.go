package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/buildkit/client/buildid"
	gwpb "github.com/moby/buildkit/frontend/gateway/pb"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/filesync"
	"github.com/moby/patternmatcher/ignorefile"
	fstypes "github.com/tonistiigi/fsutil/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The local directories buildx and compose share for a Dockerfile build
// (the names BuildKit's Dockerfile frontend asks for).
const (
	localContext    = "context"
	localDockerfile = "dockerfile"
)

// injectedDockerfile is where the Dockerfile goes in the context tar when
// the context does not hold it (-f outside the context, or stdin).
const injectedDockerfile = ".skiff-buildkit.Dockerfile"

// buildOptions turns the Dockerfile frontend's options (what buildx and
// compose send) into the engine's POST /build query. The Dockerfile's name
// in the tar (the "dockerfile" parameter) is set by the caller.
func buildOptions(opt map[string]string, names []string) (url.Values, error) {
	q := url.Values{}
	buildArgs := map[string]string{}
	labels := map[string]string{}
	for k, v := range opt {
		switch {
		case strings.HasPrefix(k, "build-arg:"):
			name := strings.TrimPrefix(k, "build-arg:")
			// BuildKit's own switches (syntax, inline cache, ...), not the Dockerfile's.
			if !strings.HasPrefix(name, "BUILDKIT_") {
				buildArgs[name] = v
			}
		case strings.HasPrefix(k, "label:"):
			labels[strings.TrimPrefix(k, "label:")] = v
		case k == "target":
			q.Set("target", v)
		case k == "no-cache":
			// Empty: no cache for any stage. A list of stages: the engine
			// cannot skip the cache for some stages only, so for none.
			q.Set("nocache", "1")
		case k == "image-resolve-mode":
			if v == "pull" {
				q.Set("pull", "1")
			}
		case k == "platform":
			if v != "" {
				q.Set("platform", v)
			}
		case k == "force-network-mode":
			if v != "" && v != "sandbox" && v != "default" {
				q.Set("networkmode", v)
			}
		case k == "add-hosts":
			if v != "" {
				var hosts []string
				for _, h := range strings.Split(v, ",") {
					hosts = append(hosts, strings.Replace(h, "=", ":", 1))
				}
				// Podman reads a JSON list here.
				b, _ := json.Marshal(hosts)
				q.Set("extrahosts", string(b))
			}
		case k == "context" || strings.HasPrefix(k, "context:") || strings.HasPrefix(k, "input:"):
			return nil, fmt.Errorf("build contexts other than the local folder (%s) are not supported by Skiff's builder", k)
		case k == "requestid":
			return nil, fmt.Errorf("the %s request is not supported by Skiff's builder", v)
		}
	}
	if len(buildArgs) > 0 {
		b, _ := json.Marshal(buildArgs)
		q.Set("buildargs", string(b))
	}
	if len(labels) > 0 {
		b, _ := json.Marshal(labels)
		q.Set("labels", string(b))
	}
	for _, n := range names {
		q.Add("t", n)
	}
	q.Set("rm", "1")
	return q, nil
}

// Solve (gateway): the Dockerfile frontend. The context comes from the
// client's session; the engine builds it and the image gets the names of
// the build's image exporter.
func (g *gateway) Solve(ctx context.Context, req *gwpb.SolveRequest) (*gwpb.SolveResponse, error) {
	j, err := g.started(ctx, buildid.FromIncomingContext(ctx))
	if err != nil {
		return nil, err
	}
	if req.Definition != nil && len(req.Definition.Def) > 0 {
		return nil, status.Error(codes.Unimplemented, "LLB definitions are not supported by Skiff's builder (Dockerfile builds only)")
	}
	if req.Frontend != "dockerfile.v0" {
		return nil, status.Errorf(codes.Unimplemented, "the %q frontend is not supported by Skiff's builder (Dockerfile builds only)", req.Frontend)
	}
	names, err := imageNames(j.req)
	if err != nil {
		return nil, status.Error(codes.Unimplemented, err.Error())
	}
	query, err := buildOptions(req.FrontendOpt, names)
	if err != nil {
		return nil, status.Error(codes.Unimplemented, err.Error())
	}
	caller, err := g.sessions.Get(ctx, j.req.Session, false)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "the client's session: %v", err)
	}
	dir, err := os.MkdirTemp("", "skiff-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	filename := req.FrontendOpt["filename"]
	if filename == "" {
		filename = "Dockerfile"
	}
	bc, err := fetchContext(ctx, caller, dir, filename, j.status)
	if err != nil {
		return nil, status.Error(codes.Unknown, err.Error())
	}
	query.Set("dockerfile", bc.dockerfile)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(bc.writeTar(pw)) }()
	id, err := g.engine.build(ctx, query, pr, j.status.engineOutput)
	pr.Close()
	if err != nil {
		var be *BuildError
		if errors.As(err, &be) {
			if step := j.status.currentStep(); step != "" {
				err = fmt.Errorf("%s: %s", step, be.Message)
			}
		}
		j.status.fail(err)
		return nil, status.Error(codes.Unknown, err.Error())
	}
	j.imageID = id
	j.status.endSteps()
	return &gwpb.SolveResponse{Result: &gwpb.Result{Result: &gwpb.Result_Ref{Ref: &gwpb.Ref{Id: id}}}}, nil
}

// buildContext is the fetched context folder and how the tar names the Dockerfile.
type buildContext struct {
	dir        string
	dockerfile string
	// extra files the tar carries besides the folder (name → content).
	extra map[string][]byte
}

// fetchContext pulls the Dockerfile and the context (less what
// .dockerignore excludes) from the client's session into dir.
func fetchContext(ctx context.Context, caller session.Caller, dir, filename string, p *progress) (*buildContext, error) {
	base := path.Base(filepath.ToSlash(filename))
	own := ownership()
	v := p.internal("[internal] load build definition from " + base)
	dfDir, ignDir, ctxDir := filepath.Join(dir, "dockerfile"), filepath.Join(dir, "ignore"), filepath.Join(dir, "context")
	for _, d := range []string{dfDir, ignDir, ctxDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
	}
	err := filesync.FSSync(ctx, caller, filesync.FSSendRequestOpt{
		Name: localDockerfile, IncludePatterns: []string{base, base + ".dockerignore"}, DestDir: dfDir, Filter: own,
	})
	df, rerr := os.ReadFile(filepath.Join(dfDir, base))
	if err == nil && rerr != nil {
		err = fmt.Errorf("no %s: %w", base, rerr)
	}
	p.done(v, err)
	if err != nil {
		return nil, fmt.Errorf("loading the Dockerfile: %w", err)
	}

	v = p.internal("[internal] load .dockerignore")
	ignore, ierr := os.ReadFile(filepath.Join(dfDir, base+".dockerignore"))
	if ierr != nil {
		err = filesync.FSSync(ctx, caller, filesync.FSSendRequestOpt{
			Name: localContext, IncludePatterns: []string{".dockerignore"}, DestDir: ignDir, Filter: own,
		})
		ignore, ierr = os.ReadFile(filepath.Join(ignDir, ".dockerignore"))
		if ierr != nil && !errors.Is(ierr, fs.ErrNotExist) && err == nil {
			err = ierr
		}
	}
	var excludes []string
	if err == nil && ierr == nil {
		excludes, err = ignorefile.ReadAll(bytes.NewReader(ignore))
	}
	p.done(v, err)
	if err != nil {
		return nil, fmt.Errorf("loading .dockerignore: %w", err)
	}

	v = p.internal("[internal] load build context")
	var total int
	err = filesync.FSSync(ctx, caller, filesync.FSSendRequestOpt{
		Name: localContext, ExcludePatterns: excludes, DestDir: ctxDir, Filter: own,
		ProgressCb: func(n int, last bool) {
			total = n
		},
	})
	if err == nil {
		p.log(v, fmt.Sprintf("transferred context: %s\n", humanBytes(total)))
	}
	p.done(v, err)
	if err != nil {
		return nil, fmt.Errorf("loading the build context: %w", err)
	}
	return placeDockerfile(ctxDir, filename, df, ignore)
}

// placeDockerfile decides how the tar holds the Dockerfile: as the
// context's own file when it is the same, else as an extra file the
// context's .dockerignore (in the tar only) keeps out of COPY.
func placeDockerfile(ctxDir, filename string, df, ignore []byte) (*buildContext, error) {
	rel := filepath.ToSlash(filepath.Clean(filename))
	if !filepath.IsAbs(filename) && !strings.HasPrefix(rel, "../") {
		if own, err := os.ReadFile(filepath.Join(ctxDir, filepath.FromSlash(rel))); err == nil && bytes.Equal(own, df) {
			return &buildContext{dir: ctxDir, dockerfile: rel}, nil
		}
	}
	ign := append(append([]byte{}, ignore...), []byte("\n/"+injectedDockerfile+"\n")...)
	return &buildContext{dir: ctxDir, dockerfile: injectedDockerfile, extra: map[string][]byte{
		injectedDockerfile: df,
		".dockerignore":    ign,
	}}, nil
}

// ownership makes the received files ours: the client's owners may be
// users we cannot chown to; the engine's COPY sets its own owners anyway.
func ownership() func(string, *fstypes.Stat) bool {
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	return func(_ string, st *fstypes.Stat) bool {
		st.Uid, st.Gid = uid, gid
		return true
	}
}

// writeTar writes the context folder (and the extra files) as a tar.
func (bc *buildContext) writeTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(bc.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(bc.dir, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		if _, ok := bc.extra[name]; ok {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = name
		if d.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	extra := make([]string, 0, len(bc.extra))
	for n := range bc.extra {
		extra = append(extra, n)
	}
	sort.Strings(extra)
	for _, n := range extra {
		b := bc.extra[n]
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	return tw.Close()
}

func humanBytes(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.2fMB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.2fkB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
