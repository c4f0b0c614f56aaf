package stack

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// killWait bounds the wait for a process group to go once SIGKILL was sent.
const killWait = 2 * time.Second

// process is a child process of the stack. It leads a process group of its own, so
// that a stop reaches whatever it starts in turn, and the kernel kills it when the
// stack's process dies first (Pdeathsig), so that it never outlives the stack. Its
// standard output and error go to a log file. Its methods are safe for concurrent use.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once the process has been reaped
	waitErr error         // set before exited is closed

	stopOnce sync.Once
	stopErr  error
}

// startProcess runs argv with the environment env (nil: none) and its output
// appended to the file logPath, created if missing.
func startProcess(name, logPath string, env []string, argv ...string) (*process, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("%s: no command", name)
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	defer logFile.Close() // the child has its own descriptor
	p := &process{name: name, logPath: logPath, exited: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	// This goroutine ends when the process does; stop waits for it.
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Pid is the process's id, which is also its process group's.
func (p *process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the process has ended and been reaped.
func (p *process) Exited() <-chan struct{} { return p.exited }

// Err is how the process ended; valid once Exited is closed.
func (p *process) Err() error {
	<-p.exited
	return p.waitErr
}

// stop sends SIGTERM to the process's group and waits until no process of the group
// is left, until ctx ends; then it sends SIGKILL to what is left of the group and
// waits at most killWait more. It returns an error only when something had to be
// killed or could not be. It may be called more than once and from several
// goroutines; later calls return the first one's result.
func (p *process) stop(ctx context.Context) error {
	p.stopOnce.Do(func() {
		pid := p.Pid()
		signalGroup(pid, syscall.SIGTERM)
		if p.waitGone(ctx.Done()) {
			return
		}
		signalGroup(pid, syscall.SIGKILL)
		killCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killWait)
		defer cancel()
		if p.waitGone(killCtx.Done()) {
			p.stopErr = fmt.Errorf("%s did not stop in time after SIGTERM; killed", p.name)
			return
		}
		p.stopErr = fmt.Errorf("%s (process group %d) still running after SIGKILL", p.name, pid)
	})
	return p.stopErr
}

// waitGone waits until the process has been reaped and no other process of its group
// is left (zombies aside), or until done is closed; it reports whether they are gone.
func (p *process) waitGone(done <-chan struct{}) bool {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.exited:
			if !groupAlive(p.Pid()) {
				return true
			}
		default:
		}
		select {
		case <-done:
			return false
		case <-p.exited:
		case <-tick.C:
		}
	}
}

// groupAlive reports whether a process of the process group pgid runs: one that is
// not a zombie, which only its parent's wait would clear.
func groupAlive(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return syscall.Kill(-pgid, 0) == nil
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) >= 3 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

// signalGroup sends sig to the process group pid leads, or to pid alone when it
// leads none (yet).
func signalGroup(pid int, sig syscall.Signal) {
	if err := syscall.Kill(-pid, sig); err != nil {
		_ = syscall.Kill(pid, sig)
	}
}

// PeakRSS is the process's peak resident set size (VmHWM) in KiB. It must be called
// while the process runs.
func (p *process) PeakRSS() (int64, error) { return p.status("VmHWM") }

// RSS is the process's resident set size now (VmRSS) in KiB. It must be called while
// the process runs.
func (p *process) RSS() (int64, error) { return p.status("VmRSS") }

// status reads the KiB value of field from the process's /proc status.
func (p *process) status(field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /proc status", field)
}

// Tail returns the last n lines of the process's log.
func (p *process) Tail(n int) string { return Tail(p.logPath, n) }

// Tail returns the last n lines of the file at path, or why it cannot be read.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
