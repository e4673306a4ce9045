package state

import (
	"fmt"

	"aead.dev/mtls"
)

// maxNameLen bounds enclave, key and policy names.
const maxNameLen = 128

// validName checks an enclave, key or policy name. Names travel in URL paths
// and policy patterns, so they are limited to a safe alphabet: letters,
// digits and - _ . + @; "*" is reserved for patterns.
func validName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s name is empty", ErrInvalidArgument, kind)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("%w: %s name is longer than %d characters", ErrInvalidArgument, kind, maxNameLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%w: %s name %q is reserved", ErrInvalidArgument, kind, name)
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '.', c == '+', c == '@':
		default:
			return fmt.Errorf("%w: %s name %q contains %q: use letters, digits and - _ . + @", ErrInvalidArgument, kind, name, c)
		}
	}
	return nil
}

// ValidEnclaveName reports whether name may name an enclave.
func ValidEnclaveName(name string) error { return validName("enclave", name) }

// ValidKeyName reports whether name may name a key.
func ValidKeyName(name string) error { return validName("key", name) }

// ValidPolicyName reports whether name may name a policy.
func ValidPolicyName(name string) error { return validName("policy", name) }

// ValidIdentity reports whether id is an identity in its text form, h1:….
func ValidIdentity(id string) error {
	i, err := mtls.ParseIdentity(id)
	if err != nil || i.IsZero() {
		return fmt.Errorf("%w: identity %q is not of the form h1:<base64url SHA-256>", ErrInvalidArgument, id)
	}
	return nil
}
