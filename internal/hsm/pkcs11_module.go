//go:build cgo

package hsm

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
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
		// Check first: pkcs11.New tells only that loading failed, and
		// leaves a library without C_GetFunctionList loaded.
		if err := moduleProblem(path); err != nil {
			return startErr(ErrModule, err, "cannot load PKCS#11 module %q: %v", path, pathErrText(err))
		}
		ctx := pkcs11.New(path)
		if ctx == nil {
			return startErr(ErrModule, nil, "cannot load PKCS#11 module %q: the dynamic loader refused it (are the libraries it needs installed?)", path)
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

// elfMachines are the ELF machines of the architectures Keep is built for.
var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386, "arm": elf.EM_ARM,
	"ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV,
}

// moduleProblem explains why the file at path cannot be a PKCS#11 module
// of this process, or returns nil if it may be one. Outside ELF systems it
// checks only that the file exists.
func moduleProblem(path string) error {
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		_, err := os.Stat(path)
		return err
	}
	f, err := elf.Open(path)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errors.New("not an ELF shared library")
		}
		return err
	}
	defer f.Close()
	if f.Type != elf.ET_DYN {
		return fmt.Errorf("an ELF file of type %v, not a shared library", f.Type)
	}
	if want, ok := elfMachines[runtime.GOARCH]; ok && f.Machine != want {
		return fmt.Errorf("built for %v, but this is %s", f.Machine, runtime.GOARCH)
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		return nil // the loader will tell
	}
	for _, s := range syms {
		if s.Name == "C_GetFunctionList" && s.Section != elf.SHN_UNDEF {
			return nil
		}
	}
	return errors.New("exports no C_GetFunctionList: not a PKCS#11 module")
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
