package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/state"
)

// Who may change a key's lifecycle: the rules of KEY:DELETE govern
// scheduling and cancelling its deletion and disabling or enabling it (all
// stop or restore what a key serves), those of KEY:CREATE its rotation
// period (a rotation creates versions).
const (
	cmdKeyLifecycle = cmds.KeyDelete
	cmdKeyRotation  = cmds.KeyCreate
)

// durationSetting is the duration of a cluster setting, or def when it is
// not set (its value was validated when it was set).
func (s *Service) durationSetting(name string, def time.Duration) time.Duration {
	v, ok := s.state.Settings()[name]
	if !ok || v == "" {
		return def
	}
	d, err := ParseDuration(v)
	if err != nil {
		return def
	}
	return d
}

// KeyInfo returns a key with every version, its state and its rotation.
func (s *Service) KeyInfo(c Caller, enclave, name string) (state.KeyInfo, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.KeyStatus, name); err != nil {
		return state.KeyInfo{}, err
	}
	return s.state.KeyInfo(enclave, name)
}

// ScheduleKeyDeletion deletes one version of a key (0: the latest) or, with
// all, every version, when window has passed: until then they are pending
// deletion, serve nothing, and CancelKeyDeletion restores them. window nil
// is the cluster's keys.deletion_window; 0 destroys them at once. Unless
// force, a version that decrypted anything in the last 30 days is refused
// (state.ErrKeyInUse).
func (s *Service) ScheduleKeyDeletion(ctx context.Context, c Caller, enclave, name string, version uint32, all bool, window *time.Duration, force bool) (state.KeyInfo, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmdKeyLifecycle, name); err != nil {
		return state.KeyInfo{}, err
	}
	if !force {
		// A version pending deletion already is left as it is.
		if err := s.checkUnused(enclave, name, version, all, func(v *state.KeyVersion) bool { return v.State() == state.StatePendingDeletion }); err != nil {
			return state.KeyInfo{}, err
		}
	}
	w := s.durationSetting(SettingDeletionWindow, DefaultDeletionWindow)
	if window != nil {
		w = *window
	}
	if w < 0 {
		return state.KeyInfo{}, fmt.Errorf("%w: negative deletion window %s", state.ErrInvalidArgument, w)
	}
	e := &state.Entry{Op: state.OpDeleteKey, Enclave: enclave, Name: name, DeleteKey: &state.DeleteKeyArgs{Version: version, All: all}}
	if w > 0 {
		e.Time = time.Now().UTC()
		e.DeleteKey.At = e.Time.Add(w)
	}
	return s.applyKeyChange(ctx, c, e)
}

// CancelKeyDeletion returns versions pending deletion (one, 0: the latest,
// or all) to the state they had.
func (s *Service) CancelKeyDeletion(ctx context.Context, c Caller, enclave, name string, version uint32, all bool) (state.KeyInfo, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmdKeyLifecycle, name); err != nil {
		return state.KeyInfo{}, err
	}
	return s.applyKeyChange(ctx, c, &state.Entry{Op: state.OpCancelDeleteKey, Enclave: enclave, Name: name, DeleteKey: &state.DeleteKeyArgs{Version: version, All: all}})
}

// SetKeyDisabled disables or enables one version of a key (0: the latest)
// or all of them. Unless force, disabling a version that decrypted
// anything in the last 30 days is refused (state.ErrKeyInUse).
func (s *Service) SetKeyDisabled(ctx context.Context, c Caller, enclave, name string, version uint32, all, disabled, force bool) (state.KeyInfo, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmdKeyLifecycle, name); err != nil {
		return state.KeyInfo{}, err
	}
	if disabled && !force {
		// A version that serves nothing already is left as it is.
		if err := s.checkUnused(enclave, name, version, all, func(v *state.KeyVersion) bool { return v.State() != state.StateActive }); err != nil {
			return state.KeyInfo{}, err
		}
	}
	return s.applyKeyChange(ctx, c, &state.Entry{Op: state.OpKeyState, Enclave: enclave, Name: name, KeyState: &state.KeyStateArgs{Version: version, All: all, Disabled: disabled}})
}

// SetKeyRotation sets the period after which the leader adds a version to
// the key; 0 stops automatic rotation.
func (s *Service) SetKeyRotation(ctx context.Context, c Caller, enclave, name string, every time.Duration) (state.KeyInfo, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmdKeyRotation, name); err != nil {
		return state.KeyInfo{}, err
	}
	if every < 0 {
		return state.KeyInfo{}, fmt.Errorf("%w: negative rotation period %s", state.ErrInvalidArgument, every)
	}
	return s.applyKeyChange(ctx, c, &state.Entry{Op: state.OpKeyRotation, Enclave: enclave, Name: name, Rotation: &state.RotationArgs{Every: every}})
}

// applyKeyChange applies a lifecycle entry and returns the key after it;
// a key destroyed by it is the zero KeyInfo with its name.
func (s *Service) applyKeyChange(ctx context.Context, c Caller, e *state.Entry) (state.KeyInfo, error) {
	if err := s.apply(ctx, c, e); err != nil {
		return state.KeyInfo{}, err
	}
	info, err := s.state.KeyInfo(e.Enclave, e.Name)
	if errors.Is(err, state.ErrKeyNotFound) {
		return state.KeyInfo{Name: e.Name}, nil
	}
	return info, err
}

// LifecycleEvent is something the leader did to a key on its own: a
// version destroyed when its deletion was due (Command "KEY:DESTROY") or a
// version added when its rotation was (Command "KEY:ROTATE").
type LifecycleEvent struct {
	Command string
	Enclave string
	Name    string
	Version uint32 // the version destroyed, or the new version
	Err     error
}

// The commands of LifecycleEvents, as audit records name them.
const (
	CommandKeyDestroy = "KEY:DESTROY"
	CommandKeyRotate  = "KEY:ROTATE"
)

// RunLifecycle destroys the key versions whose deletion is due and rotates
// the keys whose period has passed, every tick while leader() says this
// node leads, until ctx ends. Each is one log entry that applies once
// however often it is proposed (a new leader proposes again what the old
// one may have done), and is told to report when it applied.
func (s *Service) RunLifecycle(ctx context.Context, leader func() bool, tick time.Duration, report func(LifecycleEvent)) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if leader() {
			s.lifecycleOnce(ctx, time.Now().UTC(), report)
		}
	}
}

// lifecycleOnce does what is due at now.
func (s *Service) lifecycleOnce(ctx context.Context, now time.Time, report func(LifecycleEvent)) {
	destroy, rotate := s.state.Due(now)
	for _, d := range destroy {
		e := &state.Entry{Op: state.OpDestroyKey, Time: now, Enclave: d.Enclave, Name: d.Name, Destroy: &state.DestroyKeyArgs{Version: d.Version, DeleteAt: d.DeleteAt}}
		err := s.apply(ctx, Caller{}, e)
		if errors.Is(err, state.ErrKeyNotFound) {
			continue // destroyed already, or the deletion was cancelled
		}
		report(LifecycleEvent{Command: CommandKeyDestroy, Enclave: d.Enclave, Name: d.Name, Version: d.Version, Err: err})
	}
	for _, d := range rotate {
		v, err := s.rotate(ctx, now, d)
		if errors.Is(err, state.ErrVersionConflict) {
			continue // another version came first: the key is not due any more
		}
		report(LifecycleEvent{Command: CommandKeyRotate, Enclave: d.Enclave, Name: d.Name, Version: v, Err: err})
	}
}

// rotate adds a version of the type of the latest to a key that is due,
// once per period.
func (s *Service) rotate(ctx context.Context, now time.Time, d state.Due) (uint32, error) {
	latest, err := s.state.Key(d.Enclave, d.Name, d.Version)
	if err != nil {
		return 0, err
	}
	k, err := crypto.GenerateKey(latest.Type(), nil)
	if err != nil {
		return 0, err
	}
	// One attempt: if another version came first (a rotation by a previous
	// leader), the entry is refused (ErrVersionConflict).
	args := &state.KeyArgs{Type: k.Type(), AddVersion: true, Version: s.state.NextVersion(d.Enclave, d.Name)}
	if args.Sealed, err = s.state.SealKey(d.Enclave, d.Name, args.Version, k); err != nil {
		return 0, err
	}
	return args.Version, s.apply(ctx, Caller{}, &state.Entry{Op: state.OpCreateKey, Time: now, Enclave: d.Enclave, Name: d.Name, Key: args})
}
