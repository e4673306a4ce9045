package state

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	idA = "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0"
	idB = "h1:ZG1r5J2fAEj5T2d0nso1FW7tT3p74Y5PxKlL_UTjALA"
	idC = "h1:8dWUSbcnFl3nMr8oMzgSK5liimFZGP7cZ9h4__z0fac"
)

// validSnapshot is a small snapshot that validates: enclaves default and
// e, a key with two versions, a policy, an Admin with a service account,
// and a User with the policy.
func validSnapshot() *snapshot {
	return &snapshot{
		Format: snapshotFormat,
		Enclaves: []snapshotEnclave{
			{Enclave: Enclave{Name: DefaultEnclave}},
			{
				Enclave:  Enclave{Name: "e"},
				Keys:     []snapshotKey{{Name: "k", Next: 3, Versions: []snapshotVersion{{Version: 1}, {Version: 2}}}},
				Policies: []Policy{{Name: "p", Allow: map[string][]string{"KEY:GENERATE": {"*"}, "KEY:IMPORT": {"i-*"}}, Deny: map[string][]string{"KEY:DELETE": {"*"}}}},
			},
		},
		Identities: []Identity{
			{ID: idA, Enclave: "e", Privilege: Admin, ServiceAccounts: []string{idB}},
			{ID: idB, Enclave: "e", Privilege: Admin, Parent: idA},
			{ID: idC, Enclave: "e", Privilege: User, Policy: "p"},
		},
	}
}

func TestValidate(t *testing.T) {
	if err := validSnapshot().validate(); err != nil {
		t.Fatalf("valid snapshot refused: %v", err)
	}
	tests := []struct {
		name   string
		change func(s *snapshot)
		want   string
	}{
		{"enclave name", func(s *snapshot) { s.Enclaves[1].Name = "a/b" }, "enclave name"},
		{"enclave twice", func(s *snapshot) { s.Enclaves[0].Name = "e" }, `enclave "e" appears twice`},
		{"key name", func(s *snapshot) { s.Enclaves[1].Keys[0].Name = "" }, "key name is empty"},
		{"key twice", func(s *snapshot) { s.Enclaves[1].Keys = append(s.Enclaves[1].Keys, s.Enclaves[1].Keys[0]) }, `key "k" appears twice`},
		{"version zero", func(s *snapshot) { s.Enclaves[1].Keys[0].Versions[0].Version = 0 }, "version 0"},
		{"version at next", func(s *snapshot) { s.Enclaves[1].Keys[0].Next = 2 }, "version 2 (next 2)"},
		{"version twice", func(s *snapshot) { s.Enclaves[1].Keys[0].Versions[1].Version = 1 }, "repeated version 1"},
		{"policy name", func(s *snapshot) { s.Enclaves[1].Policies[0].Name = "*" }, "policy name"},
		{"policy twice", func(s *snapshot) {
			s.Enclaves[1].Policies = append(s.Enclaves[1].Policies, s.Enclaves[1].Policies[0])
		}, `policy "p" appears twice`},
		{"unknown command", func(s *snapshot) { s.Enclaves[1].Policies[0].Allow["KEY:FLY"] = []string{"*"} }, `unknown command "KEY:FLY"`},
		{"cluster command", func(s *snapshot) { s.Enclaves[1].Policies[0].Deny["CLUSTER:EDIT"] = []string{"*"} }, "needs SysAdmin"},
		{"command not canonical", func(s *snapshot) { s.Enclaves[1].Policies[0].Allow["key:list"] = []string{"*"} }, `not spelled "KEY:LIST"`},
		{"pinned spelling not canonical", func(s *snapshot) { s.Enclaves[1].Policies[0].Allow["!INVALID:203"] = []string{"*"} }, `not spelled "KEY:IMPORT"`},
		{"empty pattern", func(s *snapshot) { s.Enclaves[1].Policies[0].Allow["KEY:LIST"] = []string{""} }, "empty pattern"},
		{"identity ID", func(s *snapshot) { s.Identities[2].ID = "root" }, `identity "root" is not`},
		{"identity twice", func(s *snapshot) { s.Identities[2].ID = idA }, "appears twice"},
		{"privilege zero", func(s *snapshot) { s.Identities[2].Privilege = 0 }, "invalid privilege 0"},
		{"privilege too low", func(s *snapshot) { s.Identities[2].Privilege = 4 }, "invalid privilege 4"},
		{"enclave missing", func(s *snapshot) { s.Identities[2].Enclave = "gone" }, `enclave "gone" does not exist`},
		{"policy missing", func(s *snapshot) { s.Identities[2].Policy = "gone" }, `policy "gone" does not exist`},
		{"policy of another enclave", func(s *snapshot) { s.Identities[2].Enclave = DefaultEnclave }, `policy "p" does not exist in enclave "default"`},
		{"parent missing", func(s *snapshot) { s.Identities[2].Parent = "h1:nobody" }, "parent h1:nobody does not exist"},
		{"parent does not list it", func(s *snapshot) { s.Identities[2].Parent = idA }, "does not list it"},
		{"parent in another enclave", func(s *snapshot) {
			s.Identities[0].Enclave = DefaultEnclave
		}, "another enclave"},
		{"listed service account has another parent", func(s *snapshot) {
			s.Identities[2].ServiceAccounts = []string{idB}
		}, "has another parent"},
		{"service account listed twice", func(s *snapshot) {
			s.Identities[0].ServiceAccounts = []string{idB, idB}
		}, "listed twice"},
		{"cycle", func(s *snapshot) {
			s.Identities[0].Parent = idB
			s.Identities[1].ServiceAccounts = []string{idA}
		}, "cyclic"},
		{"own parent", func(s *snapshot) {
			s.Identities[2].Parent = idC
			s.Identities[2].ServiceAccounts = []string{idC}
		}, "cyclic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSnapshot()
			tt.change(s)
			err := s.validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("error %v, want one with %q", err, tt.want)
			}
		})
	}
}

func TestValidateDepth(t *testing.T) {
	s := validSnapshot()
	ids := []string{idA}
	for k := 0; k <= MaxServiceAccountDepth; k++ {
		ids = append(ids, identityN(k))
	}
	s.Identities = nil
	for k, id := range ids {
		i := Identity{ID: id, Enclave: "e", Privilege: Admin}
		if k > 0 {
			i.Parent = ids[k-1]
		}
		if k+1 < len(ids) {
			i.ServiceAccounts = []string{ids[k+1]}
		}
		s.Identities = append(s.Identities, i)
	}
	// MaxServiceAccountDepth+1 parents above the last identity: too deep.
	if err := s.validate(); !errors.Is(err, ErrServiceAccountCycle) {
		t.Fatalf("chain of %d: %v", len(ids), err)
	}
	s.Identities = s.Identities[:len(s.Identities)-1]
	s.Identities[len(s.Identities)-1].ServiceAccounts = nil
	if err := s.validate(); err != nil {
		t.Fatalf("chain of %d: %v", len(s.Identities), err)
	}
}

// identityN returns a valid identity of its own for each n.
func identityN(n int) string {
	sum := sha256.Sum256([]byte{byte(n), byte(n >> 8)})
	return "h1:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestRepairServiceAccounts: what older versions left behind is repaired
// the same way every time, and then validates.
func TestRepairServiceAccounts(t *testing.T) {
	t0 := time.Unix(1e9, 0).UTC()
	// A made B its service account; B then made A its own (the cycle the
	// old main allowed), last. C is listed by A but was overwritten into a
	// plain identity; a deleted identity is still listed by C.
	s := validSnapshot()
	s.Identities = []Identity{
		{ID: idA, Enclave: "e", Privilege: Admin, Parent: idB, ServiceAccounts: []string{idB, idC}, CreatedAt: t0.Add(2 * time.Second)},
		{ID: idB, Enclave: "e", Privilege: Admin, Parent: idA, ServiceAccounts: []string{idA}, CreatedAt: t0.Add(time.Second)},
		{ID: idC, Enclave: "e", Privilege: User, ServiceAccounts: []string{identityN(7)}, CreatedAt: t0},
	}
	s.repairServiceAccounts()
	if err := s.validate(); err != nil {
		t.Fatalf("repaired snapshot refused: %v", err)
	}
	a, b, c := s.Identities[0], s.Identities[1], s.Identities[2]
	if a.Parent != "" || !slices.Equal(a.ServiceAccounts, []string{idB}) || b.Parent != idA || len(b.ServiceAccounts) != 0 || len(c.ServiceAccounts) != 0 {
		t.Fatalf("repaired: %+v", s.Identities)
	}

	// With the times the other way round, the cycle breaks at B; equal
	// times break it at the smaller ID.
	for _, tt := range []struct {
		ta, tb   time.Time
		detached string
	}{{t0, t0.Add(time.Second), idB}, {t0, t0, min(idA, idB)}} {
		s := validSnapshot()
		s.Identities = []Identity{
			{ID: idA, Enclave: "e", Privilege: Admin, Parent: idB, ServiceAccounts: []string{idB}, CreatedAt: tt.ta},
			{ID: idB, Enclave: "e", Privilege: Admin, Parent: idA, ServiceAccounts: []string{idA}, CreatedAt: tt.tb},
		}
		s.repairServiceAccounts()
		if err := s.validate(); err != nil {
			t.Fatal(err)
		}
		for _, i := range s.Identities {
			if (i.Parent == "") != (i.ID == tt.detached) {
				t.Errorf("detached the wrong identity: %+v", s.Identities)
			}
		}
	}
}

// FuzzValidate feeds arbitrary snapshot JSON to the repair and the
// validation a restore runs: they must not panic or loop, and what passes
// must be a forest of service accounts whose chains end within
// MaxServiceAccountDepth, with every link pointing back.
func FuzzValidate(f *testing.F) {
	seed, _ := json.Marshal(validSnapshot())
	f.Add(seed)
	f.Add([]byte(`{"format":1,"enclaves":[{"Name":"e"}],"identities":[` +
		`{"ID":"` + idA + `","Enclave":"e","Privilege":2,"Parent":"` + idB + `","ServiceAccounts":["` + idB + `"]},` +
		`{"ID":"` + idB + `","Enclave":"e","Privilege":2,"Parent":"` + idA + `","ServiceAccounts":["` + idA + `"]}]}`))
	f.Add([]byte(`{"format":1,"enclaves":[{"Name":"e","policies":[{"Name":"p","Allow":{"KEY:IMPORT":["*"]}}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var snap snapshot
		if json.Unmarshal(data, &snap) != nil {
			return
		}
		snap.repairServiceAccounts()
		if snap.validate() != nil {
			return
		}
		ids := map[string]*Identity{}
		for k := range snap.Identities {
			ids[snap.Identities[k].ID] = &snap.Identities[k]
		}
		for _, i := range ids {
			cur := i
			for step := 0; cur.Parent != ""; step++ {
				if step == MaxServiceAccountDepth {
					t.Fatalf("chain above %s is longer than %d", i.ID, MaxServiceAccountDepth)
				}
				p := ids[cur.Parent]
				if p == nil || !slices.Contains(p.ServiceAccounts, cur.ID) || p.Enclave != cur.Enclave {
					t.Fatalf("broken link %s → %s", cur.ID, cur.Parent)
				}
				cur = p
			}
			for _, sa := range i.ServiceAccounts {
				if ids[sa] == nil || ids[sa].Parent != i.ID {
					t.Fatalf("%s lists %s, which does not point back", i.ID, sa)
				}
			}
		}
	})
}
