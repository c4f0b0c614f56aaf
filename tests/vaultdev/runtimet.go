package main

import (
	"fmt"
	"sync"
)

// runtimeT lets a program call Vault's test-core constructors, which take a
// go-testing-interface T. Fatal panics with a fatalError that recoverFatal turns back
// into an error; Cleanup functions run, last first, when cleanup is called.
// It is safe for concurrent use; mu guards cleanups and failed.
type runtimeT struct {
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// fatalError carries a Fatal message from the panic to recoverFatal.
type fatalError struct{ msg string }

func (e fatalError) Error() string { return e.msg }

// recoverFatal, deferred, turns a Fatal panic into *errp; other panics go on.
func (t *runtimeT) recoverFatal(errp *error) {
	r := recover()
	if r == nil {
		return
	}
	fe, ok := r.(fatalError)
	if !ok {
		panic(r)
	}
	*errp = fmt.Errorf("start vault core: %w", fe)
}

// cleanup runs the registered cleanup functions, last first, once each.
func (t *runtimeT) cleanup() {
	t.mu.Lock()
	fns := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

func (t *runtimeT) Cleanup(fn func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, fn)
}

func (t *runtimeT) Error(args ...any)                 { t.Fail() }
func (t *runtimeT) Errorf(format string, args ...any) { t.Fail() }

func (t *runtimeT) Fail() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
}

func (t *runtimeT) FailNow() { t.Fatal("FailNow called") }

func (t *runtimeT) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *runtimeT) Fatal(args ...any) {
	t.Fail()
	panic(fatalError{msg: fmt.Sprint(args...)})
}

func (t *runtimeT) Fatalf(format string, args ...any) {
	t.Fail()
	panic(fatalError{msg: fmt.Sprintf(format, args...)})
}

func (t *runtimeT) Helper()                          {}
func (t *runtimeT) Log(args ...any)                  {}
func (t *runtimeT) Logf(format string, args ...any)  {}
func (t *runtimeT) Name() string                     { return "vaultdev" }
func (t *runtimeT) Parallel()                        {}
func (t *runtimeT) Skip(args ...any)                 {}
func (t *runtimeT) SkipNow()                         {}
func (t *runtimeT) Skipf(format string, args ...any) {}
func (t *runtimeT) Skipped() bool                    { return false }
