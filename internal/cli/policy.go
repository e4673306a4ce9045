package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
	"github.com/spf13/cobra"

	"github.com/keep-kms/keep/internal/api/minkms"
	"github.com/keep-kms/keep/internal/state"
)

// policyJSON is a policy document: the file add-policy reads and the JSON
// get-policy prints. Rules map command names such as "KEY:GENERATE" to
// resource patterns, written as one string, an array or an object
// (kms.RuleSet). Name and creation are printed by get-policy and ignored
// by add-policy, so its output can be fed back.
type policyJSON struct {
	Name      string                 `json:"name,omitempty"`
	Allow     map[string]kms.RuleSet `json:"allow"`
	Deny      map[string]kms.RuleSet `json:"deny"`
	CreatedAt string                 `json:"created_at,omitempty"`
	CreatedBy string                 `json:"created_by,omitempty"`
}

// policyStatusJSON is the JSON form of a policy without its rules.
type policyStatusJSON struct {
	Name      string `json:"name"`
	CreatedAt string `json:"created_at,omitempty"`
	CreatedBy string `json:"created_by,omitempty"`
}

func policyStatusView(p *kms.PolicyStatusResponse) policyStatusJSON {
	return policyStatusJSON{Name: p.Name, CreatedAt: jsonTime(p.CreatedAt), CreatedBy: p.CreatedBy.String()}
}

// policyCommands returns add-policy, set-policy, rm-policy, ls-policy,
// stat-policy and get-policy.
func (a *app) policyCommands() []*cobra.Command {
	return []*cobra.Command{
		a.addPolicyCommand(),
		a.setPolicyCommand(),
		a.rmPolicyCommand(),
		a.lsPolicyCommand(),
		a.statPolicyCommand(),
		a.getPolicyCommand(),
	}
}

func (a *app) addPolicyCommand() *cobra.Command {
	var policy *kms.CreatePolicyRequest
	cmd := &cobra.Command{
		Use:   "add-policy NAME FILE",
		Short: "Create or replace a policy from a JSON file ('-' reads stdin)",
		Long: `Create or replace a policy from a JSON file ('-' reads stdin).

The file holds allow and deny rules: each maps a command to the names it
applies to, as one pattern, a list of patterns or an object. A pattern is a
name, a prefix ending in '*', or '*'. A deny rule always wins. Importing
keys needs a KEY:IMPORT rule: KEY:CREATE does not grant it.

  {
    "allow": {
      "KEY:GENERATE": "my-key*",
      "KEY:DECRYPT": ["my-key*", "shared-key"]
    },
    "deny": {
      "KEY:DELETE": "*"
    }
  }`,
		Args: argsRange(2, 2),
		PreRunE: func(cmd *cobra.Command, args []string) (err error) {
			policy, err = readPolicyFile(cmd, args[1])
			return err
		},
	}
	enclave := addEnclaveFlag(cmd)
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		policy.Name = args[0]
		return c.CreatePolicy(cmd.Context(), *enclave, policy)
	})
}

// readPolicyFile reads and parses the policy file name, or stdin for "-".
func readPolicyFile(cmd *cobra.Command, name string) (*kms.CreatePolicyRequest, error) {
	var (
		data []byte
		err  error
	)
	if name == "-" {
		data, err = io.ReadAll(cmd.InOrStdin())
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read policy file: %v", err)
	}
	p, err := parsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("policy file %s: %v", name, err)
	}
	return p, nil
}

// parsePolicy parses a policy document into a request without a name.
// Unknown fields and unknown command names are errors, so that a typo
// does not silently drop a rule.
func parsePolicy(data []byte) (*kms.CreatePolicyRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p policyJSON
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New(`empty: expected a JSON object with "allow" and "deny" rules`)
		}
		return nil, errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON object")
	}
	allow, err := rulesByCommand(p.Allow)
	if err != nil {
		return nil, fmt.Errorf("allow: %v", err)
	}
	deny, err := rulesByCommand(p.Deny)
	if err != nil {
		return nil, fmt.Errorf("deny: %v", err)
	}
	return &kms.CreatePolicyRequest{Allow: allow, Deny: deny}, nil
}

// rulesByCommand converts rules keyed by command name into rules keyed by
// command. KEY:IMPORT is a name too, though kms-go has none for it
// (state.ParseRuleCommand).
func rulesByCommand(rules map[string]kms.RuleSet) (map[cmds.Command]kms.RuleSet, error) {
	m := make(map[cmds.Command]kms.RuleSet, len(rules))
	for name, set := range rules {
		cmd, err := state.ParseRuleCommand(name)
		if err != nil {
			return nil, errors.New(strings.TrimPrefix(err.Error(), state.ErrInvalidArgument.Error()+": "))
		}
		m[cmd] = set
	}
	return m, nil
}

// rulesByName converts rules keyed by command into rules keyed by command
// name (state.RuleText); never nil, so that JSON shows {}.
func rulesByName(rules map[cmds.Command]kms.RuleSet) map[string]kms.RuleSet {
	m := make(map[string]kms.RuleSet, len(rules))
	for cmd, set := range rules {
		m[state.RuleText(cmd)] = set
	}
	return m
}

func (a *app) setPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set-policy POLICY IDENTITY",
		Short: "Assign a policy to a User identity",
		Args:  argsRange(2, 2),
		PreRunE: func(_ *cobra.Command, args []string) error {
			_, err := parseIdentityArg(args[1])
			return err
		},
	}
	enclave := addEnclaveFlag(cmd)
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		id, _ := parseIdentityArg(args[1])
		return c.AssignPolicy(cmd.Context(), *enclave, &kms.AssignPolicyRequest{Policy: args[0], Identity: id})
	})
}

func (a *app) rmPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rm-policy NAME",
		Short: "Delete a policy",
		Args:  argsRange(1, 1),
	}
	enclave := addEnclaveFlag(cmd)
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		return c.DeletePolicy(cmd.Context(), *enclave, &kms.DeletePolicyRequest{Name: args[0]})
	})
}

func (a *app) lsPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls-policy [PREFIX]",
		Short: "List policies",
		Args:  argsRange(0, 1),
	}
	enclave := addEnclaveFlag(cmd)
	asJSON := addJSONFlag(cmd)
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		list, err := listAll(cmd.Context(), c.ListPolicies, *enclave, prefixArg(args))
		if err != nil {
			return err
		}
		views := make([]policyStatusJSON, 0, len(list))
		for i := range list {
			views = append(views, policyStatusView(&list[i]))
		}
		return output(cmd, *asJSON, views, func(w io.Writer) error {
			t := newTable(w, "NAME", "CREATED")
			for _, p := range list {
				t.row(p.Name, formatTime(p.CreatedAt))
			}
			return t.flush()
		})
	})
}

func (a *app) statPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stat-policy NAME",
		Short: "Show when and by whom a policy was created",
		Args:  argsRange(1, 1),
	}
	enclave := addEnclaveFlag(cmd)
	asJSON := addJSONFlag(cmd)
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		p, err := single(c.PolicyStatus(cmd.Context(), *enclave, &kms.PolicyRequest{Name: args[0]}))
		if err != nil {
			return err
		}
		return output(cmd, *asJSON, policyStatusView(p), func(w io.Writer) error {
			return writeDetails(w, []field{
				{"Name", p.Name},
				{"Created", formatTimeAge(p.CreatedAt, time.Now())},
				{"Created by", p.CreatedBy.String()},
			})
		})
	})
}

func (a *app) getPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get-policy NAME",
		Short: "Show a policy with its allow and deny rules",
		Args:  argsRange(1, 1),
	}
	enclave := addEnclaveFlag(cmd)
	asJSON := addJSONFlag(cmd)
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		p, err := getPolicy(cmd.Context(), c, *enclave, args[0])
		if err != nil {
			return err
		}
		view := policyJSON{
			Name:      p.Name,
			Allow:     rulesByName(p.Allow),
			Deny:      rulesByName(p.Deny),
			CreatedAt: jsonTime(p.CreatedAt),
			CreatedBy: p.CreatedBy.String(),
		}
		return output(cmd, *asJSON, view, func(w io.Writer) error {
			err := writeDetails(w, []field{
				{"Name", p.Name},
				{"Created", formatTimeAge(p.CreatedAt, time.Now())},
				{"Created by", p.CreatedBy.String()},
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(w)
			t := newTable(w, "RULE", "COMMAND", "PATTERNS")
			writeRules(t, "allow", view.Allow)
			writeRules(t, "deny", view.Deny)
			return t.flush()
		})
	})
}

// writeRules adds one table row per command of rules, commands sorted by
// name and patterns in kms-go's order.
func writeRules(t *table, effect string, rules map[string]kms.RuleSet) {
	for _, name := range slices.Sorted(maps.Keys(rules)) {
		patterns := slices.Collect(maps.Keys(rules[name]))
		slices.SortFunc(patterns, sortByLength)
		t.row(effect, name, strings.Join(patterns, ", "))
	}
}

// getPolicy fetches a policy with all its rules. kms.Client.GetPolicy
// would lose the rules kms-go has no name for (KEY:IMPORT), which Keep
// sends beside the others (minkms.PolicyExtraRules), so the reply is
// decoded here.
func getPolicy(ctx context.Context, c *kms.Client, enclave, name string) (*kms.PolicyResponse, error) {
	body, err := cmds.Encode(nil, cmds.PolicyGet, &kms.PolicyRequest{Name: name})
	if err != nil {
		return nil, err
	}
	resp, err := c.Send(ctx, &kms.Request{Enclave: enclave, Body: body})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicyReply))
	if err != nil {
		return nil, fmt.Errorf("cannot read policy: %v", err)
	}
	var msg pb.PolicyResponse
	rest, err := cmds.DecodePB(data, cmds.PolicyGet, &msg)
	if err == nil && len(rest) > 0 {
		err = errors.New("more than one policy in the reply")
	}
	if err != nil {
		return nil, fmt.Errorf("cannot decode policy: %v", err)
	}
	var p kms.PolicyResponse
	if err := p.UnmarshalPB(&msg); err != nil {
		return nil, fmt.Errorf("cannot decode policy: %v", err)
	}
	allow, deny, err := minkms.PolicyExtraRules(&msg)
	if err != nil {
		return nil, err
	}
	add := func(rules map[cmds.Command]kms.RuleSet, extra map[string][]string) error {
		for text, patterns := range extra {
			cmd, err := state.ParseRuleCommand(text)
			if err != nil {
				return fmt.Errorf("cannot decode policy: %v", err)
			}
			set := kms.RuleSet{}
			for _, pattern := range patterns {
				set[pattern] = kms.Rule{}
			}
			rules[cmd] = set
		}
		return nil
	}
	if err := add(p.Allow, allow); err != nil {
		return nil, err
	}
	return &p, add(p.Deny, deny)
}

// maxPolicyReply bounds the reply of one POLICY:GET.
const maxPolicyReply = 16 << 20
