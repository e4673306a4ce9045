package kesstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxConfigSize bounds the config file ReadConfig reads: KES configs are a
// few KiB, so a larger file is not one.
const maxConfigSize = 1 << 20

// Config is the part of a KES server config file that an import needs.
type Config struct {
	// Keystore is the keystore section: which keystore KES used and how to
	// reach it.
	Keystore KeystoreConfig
}

// KeystoreConfig is the configuration of one kind of keystore.
type KeystoreConfig interface {
	// Kind is the keystore's name in the config file, e.g. "fs".
	Kind() string
	// Open opens the keystore for reading.
	Open() (Keystore, error)
}

// LookupEnv looks up an environment variable, as os.LookupEnv.
type LookupEnv func(name string) (string, bool)

// ReadConfig reads and parses the KES server config file at path (see
// ParseConfig).
func ReadConfig(path string, env LookupEnv) (*Config, error) {
	f, err := os.Open(path) // #nosec G304 -- the config file the operator names
	if err != nil {
		return nil, fmt.Errorf("cannot read KES config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read KES config %s: %w", path, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("KES config %s: larger than %d bytes, not a KES config", path, maxConfigSize)
	}
	c, err := ParseConfig(data, env)
	if err != nil {
		return nil, fmt.Errorf("KES config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses a KES server config file (YAML) as KES 63649d0 does
// (kesconf), as far as an import needs it: the version, which must be
// absent or "v1", and the keystore section, of which exactly one keystore
// must be set. The other sections are not looked at. A value "${NAME}" is
// replaced by the environment variable NAME, looked up with env; an unset
// variable is an error, as in KES. Relative paths are returned as they are:
// KES resolves them against its working directory (it never changes it, and
// does not look at where the config file is), and so does Open.
func ParseConfig(data []byte, env LookupEnv) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	if doc.Kind == 0 {
		return nil, errors.New("the file is empty")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a KES config: the file is not a YAML mapping")
	}
	root := doc.Content[0]

	if v := lookup(root, "version"); v != nil {
		if v.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: invalid version: not a string", v.Line)
		}
		if v.Value != "" && v.Value != "v1" {
			return nil, fmt.Errorf("line %d: invalid config version %q: KES reads v1", v.Line, v.Value)
		}
	}

	ks := resolve(lookup(root, "keystore"))
	if ks == nil || isNull(ks) {
		return nil, errors.New("no keystore section")
	}
	if ks.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: keystore: not a mapping", ks.Line)
	}
	if err := checkNoMerge(ks); err != nil {
		return nil, err
	}
	var kinds []string
	var spec *yaml.Node
	for _, kv := range pairs(ks) {
		k, v := kv[0], kv[1]
		// KES ignores a keystore whose section is empty ("vault:" alone).
		if isNull(v) {
			continue
		}
		for _, seen := range kinds {
			if seen == k.Value {
				return nil, fmt.Errorf("line %d: keystore %s is set twice", k.Line, printable(k.Value))
			}
		}
		kinds = append(kinds, k.Value)
		spec = v
	}
	switch len(kinds) {
	case 0:
		return nil, errors.New("no keystore specified")
	case 1:
	default:
		quoted := make([]string, len(kinds))
		for i, k := range kinds {
			quoted[i] = printable(k)
		}
		return nil, fmt.Errorf("more than one keystore specified: %s", strings.Join(quoted, ", "))
	}
	k, err := parseKeystore(kinds[0], spec, env)
	if err != nil {
		return nil, err
	}
	return &Config{Keystore: k}, nil
}

// parseKeystore parses the section of the keystore kind. This is where a
// new keystore plugs in.
func parseKeystore(kind string, n *yaml.Node, env LookupEnv) (KeystoreConfig, error) {
	switch kind {
	case "fs":
		if n.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("line %d: keystore fs: not a mapping", n.Line)
		}
		if err := checkNoMerge(n); err != nil {
			return nil, err
		}
		p, err := stringValue(lookup(n, "path"), env)
		if err != nil {
			return nil, fmt.Errorf("keystore fs: path: %w", err)
		}
		if p == "" {
			return nil, errors.New("invalid fs keystore: no path specified")
		}
		return &FSConfig{Path: p}, nil
	default:
		return nil, fmt.Errorf("keystore %s is %w (supported: fs)", printable(kind), ErrUnsupported)
	}
}

// stringValue returns the string value of a scalar, with a "${NAME}"
// reference replaced by the variable's value as KES does: the whole
// value, spaces trimmed, must be the reference. A missing node is "".
func stringValue(n *yaml.Node, env LookupEnv) (string, error) {
	n = resolve(n)
	if n == nil || isNull(n) {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("line %d: not a string", n.Line)
	}
	v := strings.TrimSpace(n.Value)
	if !strings.HasPrefix(v, "${") || !strings.HasSuffix(v, "}") {
		return n.Value, nil
	}
	name := strings.TrimSpace(v[2 : len(v)-1])
	val, ok := env(name)
	if !ok {
		return "", fmt.Errorf("line %d: environment variable %s is not set (referenced as %s)", n.Line, printable(name), printable(v))
	}
	return val, nil
}

// lookup returns the value of key in the mapping m, nil if there is none.
func lookup(m *yaml.Node, key string) *yaml.Node {
	for _, kv := range pairs(m) {
		if kv[0].Kind == yaml.ScalarNode && kv[0].Value == key {
			return kv[1]
		}
	}
	return nil
}

// pairs returns the key/value pairs of the mapping m, with aliases
// resolved.
func pairs(m *yaml.Node) [][2]*yaml.Node {
	var out [][2]*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		out = append(out, [2]*yaml.Node{resolve(m.Content[i]), resolve(m.Content[i+1])})
	}
	return out
}

// checkNoMerge refuses merge keys ("<<: *anchor") in the mapping m: KES's
// YAML decoder expands them, this parser does not, and guessing would
// read another keystore than KES.
func checkNoMerge(m *yaml.Node) error {
	for _, kv := range pairs(m) {
		if kv[0].ShortTag() == "!!merge" {
			return fmt.Errorf("line %d: merge keys (<<) are not supported in the keystore section; write the keys out", kv[0].Line)
		}
	}
	return nil
}

// resolve follows an alias to the node it names. An alias always names a
// node defined before it, so there are no cycles.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is a YAML null ("", "~", "null").
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// printable quotes s if it is not plain text, so that a config file cannot
// put control characters into a message.
func printable(s string) string {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == ' ' || r == '"' || r > 0x7e {
			return fmt.Sprintf("%q", s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

// FSConfig is the configuration of an fs keystore: a directory with one
// file per key.
type FSConfig struct {
	// Path is the directory, as written in the config (after ${VAR}
	// expansion); a relative path is relative to the working directory.
	Path string
}

// Kind returns "fs".
func (c *FSConfig) Kind() string { return "fs" }

// Open opens the directory as an fs keystore (see OpenFS).
func (c *FSConfig) Open() (Keystore, error) { return OpenFS(c.Path) }
