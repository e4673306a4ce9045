package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/crypto"
)

// checkDecode decodes data with decodeSnapshot, and with its fast path in
// chunks of chunk bytes on workers cores, and fails t unless both decode
// what json.Unmarshal decodes, or fail with its error. It reports whether
// the fast path took data.
func checkDecode(t testing.TB, data []byte, chunk, workers int) (fast bool) {
	t.Helper()
	var want snapshot
	wantErr := json.Unmarshal(data, &want)
	var got snapshot
	if fast = decodeSnapshotFast(data, &got, chunk, workers); fast {
		if wantErr != nil {
			t.Fatalf("the fast path decodes %q, which encoding/json refuses: %v", data, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("the fast path decodes %q as\n%#v\nnot as encoding/json does:\n%#v", data, got, want)
		}
	}
	got = snapshot{}
	err := decodeSnapshot(data, &got)
	switch {
	case (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error():
		t.Fatalf("decodeSnapshot(%q) = %v, encoding/json: %v", data, err, wantErr)
	case err == nil && !reflect.DeepEqual(got, want):
		t.Fatalf("decodeSnapshot decodes %q as\n%#v\nnot as encoding/json does:\n%#v", data, got, want)
	}
	return fast
}

// mainSnapshotBodies returns the JSON of the snapshot and the backup of
// testdata/main-snapshot, which Keep wrote before this decoder.
func mainSnapshotBodies(t testing.TB) [][]byte {
	var bodies [][]byte
	for _, kind := range []envelopeKind{snapshotEnvelope, backupEnvelope} {
		data, err := os.ReadFile(filepath.Join("testdata", "main-snapshot", map[envelopeKind]string{snapshotEnvelope: "snapshot", backupEnvelope: "backup"}[kind]))
		if err != nil {
			t.Fatal(err)
		}
		env, ok, err := parseEnvelope(data, kind)
		if !ok || err != nil {
			t.Fatalf("%s: %v", kind.what, err)
		}
		bodies = append(bodies, env.body)
	}
	return bodies
}

// fill sets every field of v, recursively, to a value other than its zero
// value, told apart by i.
func fill(v reflect.Value, i int) {
	switch v.Interface().(type) {
	case time.Time:
		v.Set(reflect.ValueOf(time.Date(2026, 12, 6, 12, 0, i, 123456789, time.UTC)))
		return
	case time.Duration:
		v.SetInt(int64(i+1) * int64(time.Hour))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("%s-%d", v.Type().Name(), i))
	case reflect.Uint32:
		v.SetUint(uint64(i + 1))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		n := 2
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for j := range n {
			fill(v.Index(j), i+j)
		}
	case reflect.Uint8:
		v.SetUint(uint64(i))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), i)
	case reflect.Struct:
		for j := range v.NumField() {
			fill(v.Field(j), i+j)
		}
	default:
		panic("fill: " + v.Type().String())
	}
}

// filledSnapshot is the JSON of a snapshot of enclaves with n keys each,
// every field of every key and version set.
func filledSnapshot(enclaves, n int) []byte {
	snap := snapshot{Format: snapshotFormat, ClusterID: "c", SealedRootKey: []byte{1, 2}, Settings: map[string]string{"a": "b"}}
	for e := range enclaves {
		se := snapshotEnclave{Enclave: Enclave{Name: fmt.Sprintf("e%d", e)}, Keys: make([]snapshotKey, n), Policies: []Policy{{Name: "p", Allow: map[string][]string{"KEY:GENERATE": {"*"}}}}}
		for i := range se.Keys {
			fill(reflect.ValueOf(&se.Keys[i]).Elem(), i)
		}
		snap.Enclaves = append(snap.Enclaves, se)
	}
	data, err := json.Marshal(&snap)
	if err != nil {
		panic(err)
	}
	return data
}

// TestDecodeSnapshotTakesKeep checks that what Keep writes takes the fast
// path: the snapshots of testdata/main-snapshot, and keys with every field
// of snapshotKey and snapshotVersion set, in one chunk and in chunks of
// a key each on several cores. A field added to those types fails it until
// keyDecoder knows it.
func TestDecodeSnapshotTakesKeep(t *testing.T) {
	inputs := mainSnapshotBodies(t)
	inputs = append(inputs, filledSnapshot(1, 1), filledSnapshot(3, 20))
	for i, data := range inputs {
		for _, split := range []struct{ chunk, workers int }{{minChunk, 1}, {1, 1}, {1, 4}, {300, 2}} {
			if !checkDecode(t, data, split.chunk, split.workers) {
				t.Errorf("input %d, %+v: the fast path does not take it", i, split)
			}
		}
	}
}

// TestDecodeSnapshotEdges decodes the cases encoding/json may decode
// otherwise than a decoder of Keep's own JSON would, and checks that the
// result is encoding/json's, and whether the fast path took them.
func TestDecodeSnapshotEdges(t *testing.T) {
	const sealed = `"sealed":"AQID"`
	key := func(fields string) string {
		return `{"format":2,"enclaves":[{"Name":"e","keys":[` + fields + `]}]}`
	}
	for _, c := range []struct {
		name, json string
		fast       bool
	}{
		{"plain", key(`{"name":"k","next":2,"versions":[{"version":1,"type":"AES256",` + sealed + `,"created_at":"2026-12-06T12:00:00Z"}]}`), true},
		{"escapes in a name", key(`{"name":"a\"b\\c\/d\u00e9\ud83d\ude00\n\t"}`), true},
		{"lone surrogate", key(`{"name":"\ud800x\udc00"}`), true},
		{"invalid escape", key(`{"name":"\x"}`), false},
		{"short unicode escape", key(`{"name":"\u12"}`), false},
		{"invalid UTF-8", key("{\"name\":\"a\xffb\xc3\"}"), true},
		{"UTF-8", key(`{"name":"ключ","versions":[{"created_by":"сам","type":"Ω"}]}`), true},
		{"control character", key("{\"name\":\"a\x01\"}"), false},
		{"escaped type", key(`{"versions":[{"type":"AES\u0032\u00356"}]}`), true},
		{"uint32 max", key(`{"next":4294967295}`), true},
		{"uint32 overflow", key(`{"next":4294967296}`), false},
		{"huge number", key(`{"next":123456789012345678901234567890}`), false},
		{"negative uint", key(`{"next":-1}`), false},
		{"exponent", key(`{"next":1e3}`), false},
		{"fraction", key(`{"next":1.0}`), false},
		{"leading zero", key(`{"next":01}`), false},
		{"minus zero", key(`{"rotate_every":-0}`), true},
		{"duration min", key(`{"rotate_every":-9223372036854775808}`), true},
		{"duration max", key(`{"rotate_every":9223372036854775807}`), true},
		{"duration overflow", key(`{"rotate_every":9223372036854775808}`), false},
		{"duration underflow", key(`{"rotate_every":-9223372036854775809}`), false},
		{"duration string", key(`{"rotate_every":"1h"}`), false},
		{"nulls", key(`{"name":null,"next":null,"rotate_every":null,"versions":[null,{"version":null,"type":null,"sealed":null,"imported":null,"kes":null,"created_at":null,"created_by":null,"disabled":null,"delete_at":null}]}`), true},
		{"null versions", key(`{"name":"k","versions":null}`), true},
		{"null keys", `{"enclaves":[{"Name":"e","keys":null}]}`, false},
		{"null enclaves", `{"enclaves":null}`, false},
		{"null key", key(`null`), false},
		{"no fields", key(`{},{"versions":[{}]}`), true},
		{"empty arrays", key(`{"versions":[]}`), true},
		{"no keys", `{"enclaves":[{"Name":"e","keys":[]},{"Name":"f","keys":[ ]}]}`, true},
		{"duplicate field", key(`{"name":"a","name":"b"}`), false},
		{"duplicate versions", key(`{"versions":[{"version":1,"imported":true}],"versions":[{"version":2}]}`), false},
		{"duplicate version field", key(`{"versions":[{"version":1,"version":2}]}`), false},
		{"duplicate keys", `{"enclaves":[{"keys":[{"name":"a","next":1}],"keys":[{"name":"b"}]}]}`, false},
		{"duplicate enclaves", `{"enclaves":[{"keys":[{"name":"a"}]}],"enclaves":[{"keys":[]}]}`, false},
		{"mixed case", key(`{"Name":"a","NEXT":3,"Versions":[{"Version":1,"CREATED_AT":"2026-12-06T12:00:00Z"}]}`), false},
		{"mixed case keys", `{"enclaves":[{"KEYS":[{"name":"a"}]}]}`, false},
		{"mixed case enclaves", `{"Enclaves":[{"keys":[{"name":"a"}]}]}`, false},
		{"folded s", `{"enclaveſ":[{"keys":[{"name":"a"}]}]}`, false},
		{"kelvin", `{"enclaves":[{"\u212aeys":[{"name":"a"}]}]}`, false},
		{"escaped field name", key(`{"n\u0061me":"a"}`), false},
		{"unknown field", key(`{"name":"a","colour":"red"}`), false},
		{"unknown enclave field", `{"enclaves":[{"Name":"e","colour":[1,{"a":"]"}],"keys":[{"name":"a"}]}],"other":{"keys":[]}}`, true},
		{"whitespace", " \t\n\r{ \"format\" : 2 , \"enclaves\" : [ { \"keys\" : [ { \"name\" : \"k\" , \"versions\" : [ { \"version\" : 1 , \"imported\" : true } , { \"disabled\" : false } ] } , {} ] } ] } \n", true},
		{"trailing garbage", key(`{"name":"a"}`) + `x`, false},
		{"trailing object", key(`{"name":"a"}`) + `{}`, false},
		{"truncated", key(`{"name":"a"}`)[:30], false},
		{"unterminated string", key(`{"name":"a}]}]}`), false},
		{"missing comma", key(`{"name":"a" "next":1}`), false},
		{"trailing comma", key(`{"name":"a",}`), false},
		{"trailing comma in keys", key(`{"name":"a"},`), false},
		{"bad literal", key(`{"versions":[{"imported":tru}]}`), false},
		{"literal run on", key(`{"versions":[{"imported":truex}]}`), false},
		{"null run on", key(`{"versions":[{"kes":nullnull}]}`), false},
		{"bool as string", key(`{"versions":[{"imported":"true"}]}`), false},
		{"sealed empty", key(`{"versions":[{"sealed":""}]}`), true},
		{"sealed escaped", key(`{"versions":[{"sealed":"AA\/A"}]}`), true},
		{"sealed newline escape", key(`{"versions":[{"sealed":"AQ\nID"}]}`), true},
		{"sealed bad", key(`{"versions":[{"sealed":"A"}]}`), false},
		{"sealed no padding", key(`{"versions":[{"sealed":"AQI"}]}`), false},
		{"sealed number", key(`{"versions":[{"sealed":12}]}`), false},
		{"time offset", key(`{"versions":[{"created_at":"2026-12-06T12:00:00.123+02:00","delete_at":"2026-12-06T12:00:00-07:30"}]}`), true},
		{"time bad", key(`{"versions":[{"created_at":"2026-13-06T12:00:00Z"}]}`), false},
		{"time escaped", key(`{"versions":[{"created_at":"2026-12-06T12:00:00\u005a"}]}`), false},
		{"time number", key(`{"versions":[{"created_at":1}]}`), false},
		{"kes", key(`{"versions":[{"kes":{"format":"kes","implicit":true,"sealed_hmac":"AQID","created_at":"2026-12-06T12:00:00Z","created_by":"x"}}]}`), true},
		{"kes empty", key(`{"versions":[{"kes":{}}]}`), true},
		{"kes nested", key(`{"versions":[{"kes":{"format":"kes","x":{"y":[]}}}]}`), false},
		{"kes unknown", key(`{"versions":[{"kes":{"format":"kes","x":1}}]}`), false},
		{"kes duplicate", key(`{"versions":[{"kes":{"format":"a","format":"b"}}]}`), false},
		{"kes nulls", key(`{"versions":[{"kes":{"format":null,"implicit":null,"sealed_hmac":null,"created_at":null,"created_by":null}}]}`), true},
		{"kes bad", key(`{"versions":[{"kes":{"format":1}}]}`), false},
		{"kes string", key(`{"versions":[{"kes":"x"}]}`), false},
		{"versions object", key(`{"versions":{}}`), false},
		{"key array", key(`[]`), false},
		{"type error elsewhere", `{"format":"2","enclaves":[{"keys":[{"name":"a"}]}]}`, false},
		{"deep policy", `{"enclaves":[{"keys":[{"name":"a"}],"policies":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}]}`, false},
		{"top level array", `[{"enclaves":[]}]`, false},
		{"empty", ``, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, split := range []struct{ chunk, workers int }{{minChunk, 1}, {1, 2}} {
				if fast := checkDecode(t, []byte(c.json), split.chunk, split.workers); fast != c.fast {
					t.Errorf("%+v: the fast path takes it: %v, want %v", split, fast, c.fast)
				}
			}
		})
	}
}

// FuzzSnapshotDecode checks that decodeSnapshot decodes what encoding/json
// decodes, or fails as it does, whatever the input: backups come from
// operators, and legacy snapshots carry no MAC. The seed corpus
// (testdata/fuzz/FuzzSnapshotDecode) holds the snapshots of
// testdata/main-snapshot and hostile variants of them.
func FuzzSnapshotDecode(f *testing.F) {
	for _, body := range mainSnapshotBodies(f) {
		f.Add(body)
	}
	f.Add(filledSnapshot(2, 3))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data, minChunk, 1)
		checkDecode(t, data, 1, 2)
	})
}

// BenchmarkSnapshotDecode decodes the JSON of a snapshot of 100,000 keys
// of one version each, as MinIO creates them, with encoding/json and with
// decodeSnapshot.
func BenchmarkSnapshotDecode(b *testing.B) {
	snap := snapshot{Format: snapshotFormat, Enclaves: []snapshotEnclave{{Enclave: Enclave{Name: DefaultEnclave}}}}
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for i := range 100_000 {
		snap.Enclaves[0].Keys = append(snap.Enclaves[0].Keys, snapshotKey{Name: fmt.Sprintf("minio-key-%08d", i), Next: 2, Versions: []snapshotVersion{{
			Version:   1,
			Type:      crypto.AES256,
			Sealed:    bytes.Repeat([]byte{byte(i)}, 80),
			CreatedAt: at.Add(time.Duration(i) * time.Millisecond),
			CreatedBy: "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0",
		}}})
	}
	data, err := json.Marshal(&snap)
	if err != nil {
		b.Fatal(err)
	}
	for _, dec := range []struct {
		name   string
		decode func([]byte, *snapshot) error
	}{
		{"json", func(data []byte, s *snapshot) error { return json.Unmarshal(data, s) }},
		{"keep", decodeSnapshot},
	} {
		b.Run(dec.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				var s snapshot
				if err := dec.decode(data, &s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestUnusual checks unusual against the bytes str stops at, each byte
// value at each place of a word of printable ASCII.
func TestUnusual(t *testing.T) {
	for b := range 256 {
		stop := b == '"' || b == '\\' || b < 0x20 || b >= 0x80
		for i := range 8 {
			word := []byte("abcdefgh")
			word[i] = byte(b)
			m := unusual(binary.LittleEndian.Uint64(word))
			if got := m != 0 && bits.TrailingZeros64(m)/8 == i; got != stop || !stop && m != 0 {
				t.Errorf("byte %#x at %d: unusual = %#x", b, i, m)
			}
		}
	}
}
