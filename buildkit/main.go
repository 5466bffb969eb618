// skiff-buildkit answers the BuildKit half of the Docker API that Podman
// lacks, so that buildx's `docker` driver (and so `docker build`, `docker
// buildx build` and `docker compose build`) works against Skiff offline.
//
// The host bridge (host/src/guest/build.rs) hands it the connections whose
// first request is `POST [/vX.Y]/grpc` or `POST [/vX.Y]/session`; it serves
//
//   - /session: BuildKit's session manager takes the upgraded connection
//     (the client serves its build context over it, through FileSync);
//   - /grpc: an h2c gRPC server with BuildKit's Control API (Solve, Status,
//     ListWorkers, Info, ...) and the gateway's LLBBridge, which buildx's
//     Build function calls to run the Dockerfile frontend.
//
// The build itself is done by the engine: the context is pulled from the
// client's session, sent as a tar to the engine's `POST /build`, and the
// engine's streamed output is turned into BuildKit progress.
//
// Usage: skiff-buildkit --listen SOCKET --engine DOCKER_SOCKET
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"syscall"
)

func main() {
	listen := flag.String("listen", "", "unix socket to serve the /grpc and /session upgrades on (created 0600)")
	engine := flag.String("engine", "", "the engine's Docker API unix socket the builds go to")
	flag.Parse()
	if *listen == "" || *engine == "" {
		fmt.Fprintln(os.Stderr, "usage: skiff-buildkit --listen SOCKET --engine DOCKER_SOCKET")
		os.Exit(2)
	}
	log.SetPrefix("skiff-buildkit: ")
	log.SetFlags(0)
	// Everything this process creates (its socket, build folders) is private.
	syscall.Umask(0o077)
	if err := run(*listen, *engine); err != nil {
		log.Fatal(err)
	}
}

func run(listen, engine string) error {
	if err := os.Remove(listen); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	l, err := net.Listen("unix", listen)
	if err != nil {
		return err
	}
	if err := os.Chmod(listen, 0o600); err != nil {
		return err
	}
	srv, err := newServer(newEngine(engine))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hs := &http.Server{Handler: srv.routes(ctx)}
	go func() {
		<-ctx.Done()
		hs.Close()
		os.Remove(listen)
	}()
	if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// upgradePath matches the two endpoints, with or without an API version.
var upgradePath = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/(grpc|session)$`)

func (s *server) routes(ctx context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := upgradePath.FindStringSubmatch(r.URL.Path)
		if r.Method != http.MethodPost || m == nil {
			http.Error(w, "skiff-buildkit serves only POST /grpc and POST /session", http.StatusNotFound)
			return
		}
		switch m[2] {
		case "grpc":
			s.serveGRPC(w, r)
		case "session":
			if err := s.sessions.HandleHTTPRequest(ctx, w, r); err != nil {
				log.Printf("session: %v", err)
			}
		}
	})
}
