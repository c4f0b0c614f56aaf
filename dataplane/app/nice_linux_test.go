package app

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// threadNice reads the nice value of thread tid from /proc.
func threadNice(t *testing.T, tid int) int {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command's closing parenthesis: state is field 3, nice 19.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	n, err := strconv.Atoi(f[19-3])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLowerThreadPriority: the audit writer's thread is scheduled writerNice lower
// than the process, and the process's other threads are not.
func TestLowerThreadPriority(t *testing.T) {
	base := threadNice(t, syscall.Gettid())
	tids := make(chan int)
	done := make(chan struct{})
	go func() {
		lowerThreadPriority(writerNice)
		tids <- syscall.Gettid()
		<-done // the thread lives, locked, until the test has read it
	}()
	tid := <-tids
	nice := threadNice(t, tid)
	close(done)
	if want := min(base+writerNice, 19); nice != want {
		t.Fatalf("the writer's thread has nice %d, want %d", nice, want)
	}
	if n := threadNice(t, syscall.Gettid()); n != base {
		t.Fatalf("the test's own thread went from nice %d to %d", base, n)
	}
}
