package cli

import (
	"io"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/spf13/cobra"
)

// enclaveJSON is the JSON form of an enclave.
type enclaveJSON struct {
	Name      string `json:"name"`
	CreatedAt string `json:"created_at,omitempty"`
	CreatedBy string `json:"created_by,omitempty"`
}

func enclaveView(e *kms.EnclaveStatusResponse) enclaveJSON {
	return enclaveJSON{Name: e.Name, CreatedAt: jsonTime(e.CreatedAt), CreatedBy: e.CreatedBy.String()}
}

// enclaveCommands returns add-enclave, rm-enclave, ls-enclave and
// stat-enclave. All need SysAdmin privileges.
func (a *app) enclaveCommands() []*cobra.Command {
	add := a.withClient(&cobra.Command{
		Use:   "add-enclave NAME",
		Short: "Create an enclave",
		Args:  argsRange(1, 1),
	}, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		return c.CreateEnclave(cmd.Context(), &kms.CreateEnclaveRequest{Name: args[0]})
	})

	rm := a.withClient(&cobra.Command{
		Use:   "rm-enclave NAME",
		Short: "Delete an enclave with all its keys, policies and identities",
		Args:  argsRange(1, 1),
	}, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		return c.DeleteEnclave(cmd.Context(), &kms.DeleteEnclaveRequest{Name: args[0]})
	})

	ls := &cobra.Command{
		Use:   "ls-enclave [PREFIX]",
		Short: "List enclaves",
		Args:  argsRange(0, 1),
	}
	lsJSON := addJSONFlag(ls)
	a.withClient(ls, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		list, err := listAll(cmd.Context(), c.ListEnclaves, "", prefixArg(args))
		if err != nil {
			return err
		}
		views := make([]enclaveJSON, 0, len(list))
		for i := range list {
			views = append(views, enclaveView(&list[i]))
		}
		return output(cmd, *lsJSON, views, func(w io.Writer) error {
			t := newTable(w, "NAME", "CREATED")
			for _, e := range list {
				t.row(e.Name, formatTime(e.CreatedAt))
			}
			return t.flush()
		})
	})

	stat := &cobra.Command{
		Use:   "stat-enclave NAME...",
		Short: "Show enclaves",
		Args:  argsRange(1, -1),
	}
	statJSON := addJSONFlag(stat)
	a.withClient(stat, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		reqs := make([]*kms.EnclaveStatusRequest, 0, len(args))
		for _, name := range args {
			reqs = append(reqs, &kms.EnclaveStatusRequest{Name: name})
		}
		list, err := c.EnclaveStatus(cmd.Context(), reqs...)
		if err != nil {
			return err
		}
		views := make([]enclaveJSON, 0, len(list))
		blocks := make([][]field, 0, len(list))
		now := time.Now()
		for _, e := range list {
			views = append(views, enclaveView(e))
			blocks = append(blocks, []field{
				{"Name", e.Name},
				{"Created", formatTimeAge(e.CreatedAt, now)},
				{"Created by", e.CreatedBy.String()},
			})
		}
		return output(cmd, *statJSON, oneOrMany(views), func(w io.Writer) error {
			return writeDetails(w, blocks...)
		})
	})
	return []*cobra.Command{add, rm, ls, stat}
}
