package cli

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	pb "github.com/minio/kms-go/kms/protobuf"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
)

// maxLogRecord is the largest log record a server sends (spec §2.7).
const maxLogRecord = 4096

// logJSON is the JSON form of one log record of keep logs.
type logJSON struct {
	Time     string `json:"time"`
	Level    string `json:"level,omitempty"` // server log only
	Message  string `json:"message"`
	API      string `json:"api,omitempty"`     // audit: minkms or kes
	Command  string `json:"command,omitempty"` // audit
	Method   string `json:"method,omitempty"`  // server log
	Path     string `json:"path,omitempty"`    // server log
	Identity string `json:"identity,omitempty"`
	IP       string `json:"ip,omitempty"`
}

func (a *app) logsCommand() *cobra.Command {
	var audit bool
	cmd := &cobra.Command{
		Use:   "logs [HOST[:PORT]]",
		Short: "Stream the server log or the audit log of a node",
		Long: `Stream the log of the node at HOST[:PORT] (default: the first server in
MINIO_KMS_SERVER) from now on, until Ctrl-C. The server log shows what the
node logs at its log level (keep config set log.level=debug for more);
--audit streams the audit log instead: one record per command the node
runs. Needs SysAdmin privileges.`,
		Example: `  keep logs
  keep logs --audit --json node1.example.net`,
		Args: argsRange(0, 1),
		PreRunE: func(_ *cobra.Command, args []string) error {
			_, err := a.nodeHost(args)
			return err
		},
	}
	cmd.Flags().BoolVar(&audit, "audit", false, "stream the audit log instead of the server log")
	asJSON := addJSONFlag(cmd)
	f := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		host, _ := a.nodeHost(args)
		hc, err := a.httpClient(f)
		if err != nil {
			return err
		}
		// Ask for every level: the node's log level decides what it logs.
		body, err := proto.Marshal(&pb.LogRequest{Level: int32(slog.LevelDebug)})
		if err != nil {
			return err
		}
		path := "/v1/debug/log"
		if audit {
			path += "?audit"
		}
		ctx := cmd.Context()
		resp, err := sendNode(ctx, hc, http.MethodPost, host, path, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		err = streamLogs(resp.Body, cmd.OutOrStdout(), audit, *asJSON)
		if ctx.Err() != nil {
			return nil // Ctrl-C: the end the user asked for
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%s closed the log stream", host)
		}
		return fmt.Errorf("%s: log stream broken: %w", host, err)
	}
	return cmd
}

// streamLogs prints the records of a /v1/debug/log stream, one line each,
// until it ends; it always returns an error, io.EOF for the end.
func streamLogs(r io.Reader, w io.Writer, audit, asJSON bool) error {
	in := bufio.NewReader(r)
	buf := make([]byte, maxLogRecord)
	for {
		if _, err := io.ReadFull(in, buf[:4]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(buf)
		if n > maxLogRecord {
			return fmt.Errorf("log record of %d bytes, more than %d", n, maxLogRecord)
		}
		if _, err := io.ReadFull(in, buf[:n]); err != nil {
			return err
		}
		var rec pb.LogRecord
		if err := proto.Unmarshal(buf[:n], &rec); err != nil {
			return fmt.Errorf("invalid log record: %w", err)
		}
		if err := writeLogRecord(w, &rec, audit, asJSON); err != nil {
			return err
		}
	}
}

// writeLogRecord prints one record: the server's own line for the server
// log, time, API, identity, IP and outcome for the audit log, or JSON.
func writeLogRecord(w io.Writer, rec *pb.LogRecord, audit, asJSON bool) error {
	req := rec.GetReq()
	if asJSON {
		v := logJSON{
			Time:     rec.GetTime().AsTime().UTC().Format(time.RFC3339Nano),
			Message:  rec.GetMessage(),
			Identity: req.GetIdentity(),
			IP:       req.GetIP(),
		}
		if v.IP == "0.0.0.0" {
			v.IP = "" // the server's stand-in for records without a client
		}
		if audit {
			v.API, v.Command = req.GetMethod(), req.GetPath()
		} else {
			v.Level = slog.Level(rec.GetLevel()).String()
			v.Method, v.Path = req.GetMethod(), req.GetPath()
		}
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", data)
		return err
	}
	if !audit {
		_, err := fmt.Fprintln(w, rec.GetMessage())
		return err
	}
	identity := req.GetIdentity()
	if identity == "" {
		identity = "-"
	}
	_, err := fmt.Fprintf(w, "%s %s %s %s %s\n", rec.GetTime().AsTime().Local().Format("2006-01-02 15:04:05.000"),
		req.GetMethod(), identity, req.GetIP(), rec.GetMessage())
	return err
}
