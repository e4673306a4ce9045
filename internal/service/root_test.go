package service

import (
	"context"
	"errors"
	"strings"
	"testing"

	"aead.dev/mtls"

	"github.com/keep-kms/keep/internal/state"
)

// newRootService returns a service over an initialized state, whose own
// root is the identity of a fresh key, and that key.
func newRootService(t *testing.T) (*Service, Caller) {
	t.Helper()
	st, c := initializedState(t)
	root := newCaller(t)
	return New(st, c, root.Identity), root
}

func newCaller(t *testing.T) Caller {
	t.Helper()
	k, err := mtls.GenerateKeyEdDSA(nil)
	if err != nil {
		t.Fatal(err)
	}
	return Caller{Identity: k.Identity().String()}
}

// TestAdminIdentity replaces the node's root with a registered SysAdmin
// through the setting admin.identity, and checks who may do what after.
func TestAdminIdentity(t *testing.T) {
	ctx := context.Background()
	s, root := newRootService(t)
	admin, other, unknown := newCaller(t), newCaller(t), newCaller(t)
	for _, id := range []Caller{admin, other} {
		if err := s.CreateIdentity(ctx, root, "", id.Identity, state.SysAdmin, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	set := func(c Caller, v string) error {
		_, err := s.SetSettings(ctx, c, map[string]string{SettingAdminIdentity: v})
		return err
	}

	steps := []struct {
		name   string
		by     Caller
		value  string
		want   error  // of SetSettings
		text   string // in the error
		root   Caller // the root after the step
		denied Caller // gets ErrPermission after the step
	}{
		{"an unregistered identity", root, unknown.Identity, state.ErrInvalidArgument, "is not registered", root, unknown},
		{"an API key", root, "k1:" + strings.Repeat("A", 43), state.ErrInvalidArgument, "not an API key", root, unknown},
		{"another SysAdmin may not hand over the root", other, other.Identity, ErrPermission, "only the current admin", root, unknown},
		{"the root hands over", root, admin.Identity, nil, "", admin, root},
		{"the old root may not take it back", root, "", ErrPermission, "", admin, root},
		{"another SysAdmin may not take it", other, "", ErrPermission, "only the current admin", admin, root},
		{"the admin gives every node its own root back", admin, "", nil, "", root, unknown},
	}
	for _, st := range steps {
		err := set(st.by, st.value)
		switch {
		case st.want == nil && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case st.want != nil && !errors.Is(err, st.want):
			t.Fatalf("%s: %v, want %v", st.name, err, st.want)
		case !strings.Contains(errText(err), st.text):
			t.Errorf("%s: %q does not say %q", st.name, err, st.text)
		case strings.HasPrefix(st.value, "k1:") && strings.Contains(errText(err), st.value):
			t.Errorf("%s: the error repeats the API key: %q", st.name, err)
		}
		if err := s.AuthorizeSysAdmin(st.root); err != nil {
			t.Errorf("%s: root %s: %v", st.name, st.root.Identity, err)
		}
		if self, err := s.Identity(st.root, "", ""); err != nil || self.Privilege != state.SysAdmin {
			t.Errorf("%s: root describes itself as %+v, %v", st.name, self, err)
		}
		if err := s.AuthorizeSysAdmin(st.denied); !errors.Is(err, ErrPermission) {
			t.Errorf("%s: %s is not denied: %v", st.name, st.denied.Identity, err)
		}
		if _, err := s.Identity(st.denied, "", ""); !errors.Is(err, ErrPermission) {
			t.Errorf("%s: %s describes itself: %v", st.name, st.denied.Identity, err)
		}
	}

	// While it is the admin, the admin cannot be deleted, by anyone.
	if err := set(root, admin.Identity); err != nil {
		t.Fatal(err)
	}
	for _, by := range []Caller{admin, other} {
		err := s.DeleteIdentity(ctx, by, "", admin.Identity)
		if !errors.Is(err, state.ErrInvalidArgument) || !strings.Contains(err.Error(), "is the cluster's admin") {
			t.Errorf("delete the admin as %s: %v, want refused", by.Identity, err)
		}
	}
	if err := s.AuthorizeSysAdmin(admin); err != nil {
		t.Errorf("the admin after the refused deletes: %v", err)
	}
	// The node's own root cannot be registered to come back in.
	if err := s.CreateIdentity(ctx, admin, "", root.Identity, state.SysAdmin, false, nil); !errors.Is(err, state.ErrInvalidArgument) {
		t.Errorf("register the node's own root while the cluster has an admin: %v, want refused", err)
	}
	// The reply of the handover is the settings, though the old root may
	// not read them any more.
	if err := set(admin, ""); err != nil {
		t.Fatal(err)
	}
	got, err := s.SetSettings(ctx, root, map[string]string{SettingAdminIdentity: admin.Identity})
	if err != nil || got[SettingAdminIdentity] != admin.Identity {
		t.Errorf("SetSettings returned %v, %v, want the new admin", got, err)
	}
	if _, err := s.Settings(root); !errors.Is(err, ErrPermission) {
		t.Errorf("the old root reads the settings: %v", err)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestDescribeSettings(t *testing.T) {
	secretSettings["log.level"] = true // no setting is secret yet: pretend
	defer delete(secretSettings, "log.level")
	tests := []struct {
		changes map[string]string
		applied bool
		want    string
	}{
		{map[string]string{"audit": "off"}, true, `audit="off"`},
		{map[string]string{"audit": "", "admin.identity": "h1:x"}, true, `admin.identity="h1:x" audit=""`},
		{map[string]string{"log.level": "debug", "audit": "on"}, true, `audit="on" log.level=(secret)`},
		{map[string]string{"new.setting": "k1:abc"}, true, `new.setting=(secret)`},
		{map[string]string{"admin.identity": "k1:abc", "audit": "of"}, false, `admin.identity audit`},
		{map[string]string{"k1:abc": "x"}, false, `(unknown)`},
		{map[string]string{}, true, ``},
	}
	for _, tt := range tests {
		if got := DescribeSettings(tt.changes, tt.applied); got != tt.want {
			t.Errorf("DescribeSettings(%v, %v) = %s, want %s", tt.changes, tt.applied, got, tt.want)
		}
	}
}
