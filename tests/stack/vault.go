package stack

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// VaultOptions describe the throwaway dev Vault the stack runs: the launcher of
// tests/vaultdev (docs/vault-dev.md), Vault's server core in memory.
type VaultOptions struct {
	// Binary is the launcher (make vaultdev builds bin/vaultdev).
	Binary string
	// Listen is its host:port; "" is a random loopback port.
	Listen string
	// TokenFile is where the launcher writes its root token (mode 0600).
	TokenFile string
	// Env is the launcher's environment.
	Env []string
}

// vault is the running dev Vault.
type vault struct {
	proc *process
	addr string
}

// startVault runs the launcher and waits for its ready line, which names its address.
func (s *Stack) startVault(ctx context.Context, o VaultOptions) (*vault, error) {
	listen := o.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	if o.TokenFile == "" {
		return nil, fmt.Errorf("dev Vault: no token file")
	}
	_ = os.Remove(o.TokenFile)
	logPath := filepath.Join(s.logDir, "vault.log")
	if err := os.WriteFile(logPath, nil, 0o600); err != nil {
		return nil, err
	}
	p, err := startProcess("vault", logPath, o.Env, o.Binary, "-listen", listen, "-token-file", o.TokenFile, "-exit-on-stdin-eof=false")
	if err != nil {
		return nil, err
	}
	v := &vault{proc: p}
	// Its first line on stdout is {"addr":"http://...","token_file":"..."}.
	deadline := time.Now().Add(s.readyTimeout)
	for v.addr == "" {
		v.addr = readyAddr(logPath)
		if v.addr != "" {
			break
		}
		var err error
		select {
		case <-p.Exited():
			err = fmt.Errorf("the dev Vault exited before it served: %v", p.Err())
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(100 * time.Millisecond):
			if time.Now().After(deadline) {
				err = fmt.Errorf("the dev Vault did not serve within %s", s.readyTimeout)
			}
		}
		if err != nil {
			_ = p.stop(ctx)
			return nil, fmt.Errorf("%w\n--- %s (tail) ---\n%s", err, logPath, p.Tail(30))
		}
	}
	s.track("vault", p.Exited(), p.Err)
	return v, nil
}

// readyAddr is the address in the launcher's ready line in the log at path, "" until
// it is there.
func readyAddr(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, `{"addr":"`) {
			continue
		}
		var ready struct {
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &ready) == nil {
			return strings.TrimRight(ready.Addr, "/")
		}
	}
	return ""
}
