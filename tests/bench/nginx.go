package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The bare-proxy reference: nginx with one worker process, no access log and a
// kept-alive upstream, proxying the same mock as the gateway. It has no controls at
// all: what it adds to a request is the floor any proxy pays on this machine.

// nginxInstall is what the report says when nginx is missing.
const nginxInstall = "apt-get install nginx-light"

// nginxConfig is the reference proxy's configuration, with one server block (from
// nginxServer) per mock. Buffering is off so that a streamed answer flows through as
// the gateway relays it.
const nginxConfig = `# written by make bench
worker_processes 1;
daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	keepalive_requests 1000000;
%[2]s}
`

// nginxServer proxies listen address %[3]s to upstream %[2]s, named %[1]s.
const nginxServer = `	upstream %[1]s {
		server %[2]s;
		keepalive 128;
	}
	server {
		listen %[3]s;
		location / {
			proxy_pass http://%[1]s;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_buffering off;
		}
	}
`

// findNginx returns the nginx binary's path, or "" when it is not installed.
func findNginx() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}

// startNginx starts nginx in dir as a reverse proxy to each of upstreams (base
// URLs), and returns a base URL for each, in order, and a stop function.
func startNginx(ctx context.Context, bin, dir string, upstreams []string, log io.Writer) ([]string, func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	var servers strings.Builder
	var urls []string
	for i, up := range upstreams {
		u, err := url.Parse(up)
		if err != nil {
			return nil, nil, err
		}
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(&servers, nginxServer, fmt.Sprintf("mock%d", i), u.Host, addr)
		urls = append(urls, "http://"+addr)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConfig, dir, servers.String()), 0o644); err != nil {
		return nil, nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start nginx: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt) // nginx's fast shutdown on SIGINT
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, u := range urls {
		addr := strings.TrimPrefix(u, "http://")
		for {
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			select {
			case err := <-exited:
				errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
				return nil, nil, fmt.Errorf("nginx exited at start: %v: %s", err, strings.TrimSpace(string(errLog)))
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				stop()
				return nil, nil, fmt.Errorf("nginx did not listen on %s within 10 s", addr)
			}
		}
	}
	return urls, stop, nil
}

// freeLoopbackAddr returns a 127.0.0.1 address with a port nothing listens on now.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
