package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/minio/kms-go/kms"
	"github.com/spf13/cobra"
)

// nodeHost returns the node a command addresses: HOST[:PORT] from args[0]
// if given, else the first server in MINIO_KMS_SERVER.
func (a *app) nodeHost(args []string) (string, error) {
	if len(args) > 0 {
		return hostArg(args[0])
	}
	host, err := hostPort(endpoints(a.getenv(EnvServer))[0])
	if err != nil {
		return "", fmt.Errorf("%s: %v", EnvServer, err)
	}
	return host, nil
}

// sendNode makes a request that kms-go has no method for to the node at
// host, and returns the response if it is a 200. Another status becomes
// the server's error; errors are kms.HostErrors, so that describeError
// gives advice about them.
func sendNode(ctx context.Context, hc *http.Client, method, host, path, contentType string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "https://"+host+path, body)
	if err != nil {
		return nil, &kms.HostError{Host: host, Err: err}
	}
	req.Header.Set("Accept", contentType)
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, &kms.HostError{Host: host, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, &kms.HostError{Host: host, Err: readAPIError(resp)}
	}
	return resp, nil
}

// nodeCommands returns the commands that operate nodes: logs, pprof and
// config. All need SysAdmin privileges.
func (a *app) nodeCommands() []*cobra.Command {
	return []*cobra.Command{a.logsCommand(), a.pprofCommand(), a.configCommand()}
}
