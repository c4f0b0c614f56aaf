package app

import (
	"runtime"
	"syscall"
)

// lowerThreadPriority gives the calling goroutine an OS thread of its own, with its
// nice value raised by n (a lower scheduling priority), for as long as it runs. A
// thread cannot lower its own nice value back unprivileged, so the thread ends with
// the goroutine (it stays locked). It does nothing if the kernel refuses.
func lowerThreadPriority(n int) {
	runtime.LockOSThread()
	tid := syscall.Gettid()
	cur, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	if err != nil {
		return
	}
	// The raw getpriority syscall answers 20 - nice.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, min(20-cur+n, 19))
}
