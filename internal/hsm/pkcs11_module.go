package hsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
)

// p11Module is a loaded, initialized PKCS#11 module. A process loads each
// module once: dlopen returns the same library for every PKCS11 on it, and
// C_Initialize and C_Finalize act on the whole library, so every PKCS11 of
// the process on that module shares one p11Module.
type p11Module struct {
	path string
	key  string // key in modules
	ctx  *pkcs11.Ctx

	// users maps each p11Session on the module to the slot it last logged
	// in to; guarded by modulesMu. A login is per token and process, so a
	// session logs out only if no other session uses its slot.
	users map[*p11Session]uint
}

var (
	modulesMu sync.Mutex
	modules   = map[string]*p11Module{}
)

// loadModule sets s.mod to the module s.conf.Module, loading and
// initializing it if no other session uses it.
func loadModule(s *p11Session) error {
	path := s.conf.Module
	key := path
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		key = resolved
	}
	modulesMu.Lock()
	defer modulesMu.Unlock()
	mod := modules[key]
	if mod == nil {
		// Stat first: the loader's own error text is lost by pkcs11.New.
		if _, err := os.Stat(path); err != nil {
			return startErr(ErrModule, err, "cannot load PKCS#11 module %q: %v", path, pathErrText(err))
		}
		ctx := pkcs11.New(path)
		if ctx == nil {
			return startErr(ErrModule, nil, "cannot load PKCS#11 module %q: not a loadable PKCS#11 library (dlopen or C_GetFunctionList failed)", path)
		}
		if err := ctx.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
			ctx.Destroy()
			return startErr(ErrModule, err, "cannot initialize PKCS#11 module %q: %v", path, err)
		}
		mod = &p11Module{path: path, key: key, ctx: ctx, users: map[*p11Session]uint{}}
		modules[key] = mod
	}
	mod.users[s] = ^uint(0) // no slot yet
	s.mod = mod
	return nil
}

// pathErrText is the text of a stat error without the path, which the
// message names already.
func pathErrText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// setSlot records that s is logged in to slot.
func (m *p11Module) setSlot(s *p11Session, slot uint) {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m.users[s] = slot
}

// sharedSlot reports whether another session of the process uses the slot
// s is logged in to.
func (m *p11Module) sharedSlot(s *p11Session) bool {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	for u, slot := range m.users {
		if u != s && slot == m.users[s] {
			return true
		}
	}
	return false
}

// release removes s from the module's users and, if it was the last,
// finalizes and unloads the module.
func (m *p11Module) release(s *p11Session) error {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if _, ok := m.users[s]; !ok {
		return nil
	}
	delete(m.users, s)
	if len(m.users) > 0 {
		return nil
	}
	delete(modules, m.key)
	err := m.ctx.Finalize()
	m.ctx.Destroy()
	if err != nil {
		return fmt.Errorf("finalize PKCS#11 module %q: %w", m.path, err)
	}
	return nil
}

// findSlot returns the slot of the token c names. If there is none, the
// error lists the tokens present so that a typo is easy to spot.
func (m *p11Module) findSlot(c PKCS11Config) (uint, error) {
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("hsm: cannot list the slots of PKCS#11 module %q: %w", m.path, err)
	}
	var present []string
	var matches []uint
	for _, slot := range slots {
		info, err := m.ctx.GetTokenInfo(slot)
		if err != nil {
			continue // a token removed meanwhile is not present
		}
		present = append(present, strconv.Quote(info.Label)+" (slot "+strconv.FormatUint(uint64(slot), 10)+")")
		if (c.Slot != nil && *c.Slot == slot) || (c.Slot == nil && info.Label == c.Token) {
			matches = append(matches, slot)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		list := "none"
		if len(present) > 0 {
			list = strings.Join(present, ", ")
		}
		return 0, startErr(ErrTokenNotFound, nil, "PKCS#11 %s not found in module %q; tokens present: %s", c.describeToken(), m.path, list)
	default:
		return 0, startErr(ErrTokenNotFound, nil, "%d tokens are labelled %q in PKCS#11 module %q; name one by its slot instead", len(matches), c.Token, m.path)
	}
}
