package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/portcullis-gw/portcullis/shared/vaulttest"
)

// VaultOptions describe the throwaway dev Vault the stack runs: the launcher of
// tests/vaultdev (docs/vault-dev.md), Vault's server core in memory.
type VaultOptions struct {
	// Binary is the launcher: vaulttest.BuildLauncher's cached build, or one built
	// by hand (make vaultdev builds bin/vaultdev).
	Binary string
	// Listen is its host:port; "" is a random loopback port.
	Listen string
	// TokenFile is where the launcher writes its root token (mode 0600).
	TokenFile string
	// Env is the launcher's environment.
	Env []string
}

// startVault runs the launcher with vaulttest.Launch, its stderr in <LogDir>/vault.log,
// and waits until it serves. Like the stack's other child processes (startProcess), it
// leads a process group of its own, so that a signal to the terminal's group leaves its
// stop to Stop, and the kernel kills it when the stack's process dies first.
func (s *Stack) startVault(ctx context.Context, o VaultOptions) (*vaulttest.Launcher, error) {
	if o.Binary == "" {
		return nil, errors.New("dev Vault: no launcher binary")
	}
	if o.TokenFile == "" {
		return nil, errors.New("dev Vault: no token file")
	}
	_ = os.Remove(o.TokenFile)
	l, err := vaulttest.Launch(ctx, o.Binary, vaulttest.LaunchOptions{
		Listen:       o.Listen,
		TokenFile:    o.TokenFile,
		Env:          o.Env,
		LogFile:      filepath.Join(s.logDir, "vault.log"),
		SysProcAttr:  &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
		ReadyTimeout: s.readyTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("the dev Vault: %w", err)
	}
	s.track("vault", l.Exited(), l.Err)
	return l, nil
}
