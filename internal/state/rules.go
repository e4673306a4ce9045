package state

import (
	"fmt"
	"strings"

	"github.com/minio/kms-go/kms/cmds"
)

// RuleKeyImport is how a policy names cmds.KeyImport. The pinned kms-go
// numbers the command (203) but has no text for it: its typed
// CreatePolicyRequest sends the number as ruleKeyImportPinned, and its
// PolicyResponse cannot parse a rule that names it at all.
const RuleKeyImport = "KEY:IMPORT"

// ruleKeyImportPinned is cmds.KeyImport.String() of the pinned kms-go,
// what its client sends for a rule on cmds.KeyImport.
const ruleKeyImportPinned = "!INVALID:203"

// ParseRuleCommand parses the command of a policy rule, in any case: every
// command text of kms-go, and KEY:IMPORT (also as the pinned client spells
// it). Cluster and enclave commands are refused: they need SysAdmin, and no
// policy can grant them.
func ParseRuleCommand(text string) (cmds.Command, error) {
	cmd, err := cmds.Parse(text)
	switch upper := strings.ToUpper(text); {
	case err == nil:
	case upper == RuleKeyImport, upper == ruleKeyImportPinned:
		cmd = cmds.KeyImport
	default:
		return 0, fmt.Errorf("%w: unknown command %q in policy", ErrInvalidArgument, text)
	}
	if cmd < cmds.KeyCreate {
		return 0, fmt.Errorf("%w: policies cannot grant or deny %s: it needs SysAdmin", ErrInvalidArgument, cmd)
	}
	return cmd, nil
}

// RuleText is the text under which a policy stores the rules of cmd.
func RuleText(cmd cmds.Command) string {
	if cmd == cmds.KeyImport {
		return RuleKeyImport
	}
	return cmd.String()
}
