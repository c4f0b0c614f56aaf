// Command portcullis is the Portcullis admin CLI, a client of the control plane's
// admin API. Run "portcullis -h" for its commands; the logic lives in internal/cli.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/portcullis-gw/portcullis/controlplane/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return cli.Run(ctx, args, cli.IO{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr}, getenv)
}

// exitCode reports err on stderr and maps it to the process exit status: 0 on
// success, 2 for a command line that could not be understood or a diff with
// changes, 1 otherwise. API errors
// print as "code: message" followed by one line per field error.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var apiErr *cli.APIError
	switch {
	case errors.Is(err, cli.ErrChanges): // diff printed the plan
		return 2
	case errors.Is(err, cli.ErrUsage):
		if err != cli.ErrUsage { // the bare sentinel means the usage was already printed
			fmt.Fprintln(stderr, "portcullis:", err)
		}
		return 2
	case errors.As(err, &apiErr):
		fmt.Fprintln(stderr, err)
	default:
		fmt.Fprintln(stderr, "portcullis:", err)
	}
	return 1
}
