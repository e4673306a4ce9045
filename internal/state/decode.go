package state

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/keep-kms/keep/internal/crypto"
)

// decodeSnapshot decodes data, the JSON of a snapshot, into s: exactly what
// json.Unmarshal(data, s) decodes, or its error.
//
// Nearly all of a snapshot is its keys, and encoding/json took most of a
// restore's CPU on them (reflection, a validating pass over the whole
// input before the decoding one, and garbage). So the keys arrays of the
// enclaves are decoded by keyDecoder, which knows snapshotKey and
// snapshotVersion and nothing else, in chunks on every core, and the rest
// of the snapshot (enclaves without their keys, policies, identities,
// settings, usage: a small part) by encoding/json. keyDecoder takes only
// the JSON that Keep writes, give or take whitespace, nulls and escapes in
// values: at anything else (an unknown, repeated or differently cased
// field, an escaped field name, a number that is not a plain integer in
// range, a syntax error, ...) decodeSnapshot gives up and decodes the whole
// of data with json.Unmarshal, so that its result, or its error, is always
// encoding/json's. FuzzSnapshotDecode checks that on arbitrary inputs.
func decodeSnapshot(data []byte, s *snapshot) error {
	workers := runtime.GOMAXPROCS(0)
	if decodeSnapshotFast(data, s, max(minChunk, len(data)/(4*workers)), workers) {
		return nil
	}
	*s = snapshot{}
	return json.Unmarshal(data, s)
}

// decodeSnapshotFast decodes data into s as json.Unmarshal would, its keys
// in chunks of about chunk bytes on up to workers cores, or reports false,
// with s in any state, for JSON it does not take.
func decodeSnapshotFast(data []byte, s *snapshot, chunk, workers int) bool {
	l, ok := scanSnapshot(data, chunk)
	if !ok || len(l.arrays) == 0 {
		return false
	}
	// The snapshot without its keys, each keys array replaced by null,
	// goes to encoding/json; it checks the syntax of all but the keys
	// arrays, which keyDecoder checks.
	size := len(data)
	for _, a := range l.arrays {
		size -= a.end - a.start - len("null")
	}
	rest := make([]byte, 0, size)
	prev := 0
	for _, a := range l.arrays {
		rest = append(rest, data[prev:a.start]...)
		rest = append(rest, "null"...)
		prev = a.end
	}
	rest = append(rest, data[prev:]...)
	if err := json.Unmarshal(rest, s); err != nil || len(s.Enclaves) != l.enclaves {
		return false
	}
	var chunks []keysChunk
	for _, a := range l.arrays {
		keys := make([]snapshotKey, a.keys)
		for _, c := range a.chunks {
			c.keys = keys[c.first : c.first+c.n]
			chunks = append(chunks, c)
		}
		s.Enclaves[a.enclave].Keys = keys
	}
	return decodeChunks(data, chunks, workers)
}

// minChunk is the least JSON of keys that decodeSnapshot hands a core:
// less is not worth a goroutine.
const minChunk = 256 << 10

// layout is where the keys arrays lie in the JSON of a snapshot.
type layout struct {
	enclaves int // elements of the enclaves array
	arrays   []keysArray
}

// keysArray is the keys array of an enclave, split into chunks of keys.
type keysArray struct {
	enclave    int // its index in the enclaves array
	start, end int // data[start:end] is the array, from [ to ]
	keys       int // its elements
	chunks     []keysChunk
}

// keysChunk is a run of consecutive keys of a keys array.
type keysChunk struct {
	first, n   int // the keys' indexes in their array
	start, end int // their JSON, from the first's { to the last's }
	keys       []snapshotKey
}

// scanSnapshot finds the keys arrays of the enclaves in data and splits
// them into chunks of about chunk bytes. It checks the syntax of the keys
// arrays only as far as it must to find where their elements start and
// end; that is enough for valid JSON, and keyDecoder checks the rest.
// ok is false for JSON where json.Unmarshal could find the enclaves or
// their keys elsewhere than scanSnapshot would: two fields named
// "enclaves", or "keys" in one enclave, a field named so in another case
// (encoding/json matches names without regard to case), an escaped or
// non-ASCII field name (which could unescape or fold into one of those),
// or enclaves or keys that are not arrays of objects.
func scanSnapshot(data []byte, chunk int) (l layout, ok bool) {
	c := cursor{d: data}
	c.ws()
	seen := false
	ok = c.members(func(name []byte) bool {
		switch {
		case string(name) == "enclaves":
			if seen {
				return false
			}
			seen = true
			return c.enclaves(&l, chunk)
		case bytes.EqualFold(name, []byte("enclaves")):
			return false
		}
		return c.skip()
	})
	c.ws()
	return l, ok && c.p == len(data)
}

// enclaves scans the enclaves array at c.p into l.
func (c *cursor) enclaves(l *layout, chunk int) bool {
	if c.null() {
		return true
	}
	return c.elements(func() bool {
		seen := false
		ok := c.members(func(name []byte) bool {
			switch {
			case string(name) == "keys":
				if seen {
					return false
				}
				seen = true
				return c.keys(l, chunk)
			case bytes.EqualFold(name, []byte("keys")):
				return false
			}
			return c.skip()
		})
		l.enclaves++
		return ok
	})
}

// keys scans the keys array at c.p of enclave l.enclaves into l.
func (c *cursor) keys(l *layout, chunk int) bool {
	if c.null() {
		return true
	}
	a := keysArray{enclave: l.enclaves, start: c.p}
	ch := keysChunk{}
	ok := c.elements(func() bool {
		if ch.n == 0 {
			ch.start = c.p
		}
		if c.p >= len(c.d) || c.d[c.p] != '{' || !c.skip() {
			return false
		}
		a.keys++
		ch.n++
		ch.end = c.p
		if ch.end-ch.start >= chunk {
			a.chunks = append(a.chunks, ch)
			ch = keysChunk{first: a.keys}
		}
		return true
	})
	if ch.n > 0 {
		a.chunks = append(a.chunks, ch)
	}
	a.end = c.p
	l.arrays = append(l.arrays, a)
	return ok
}

// decodeChunks decodes the keys of chunks from data on up to workers
// cores, and reports whether every one was decoded.
func decodeChunks(data []byte, chunks []keysChunk, workers int) bool {
	var (
		next   atomic.Int64
		failed atomic.Bool
	)
	work := func() {
		k := keyDecoder{cursor: cursor{d: data}}
		for !failed.Load() {
			i := int(next.Add(1) - 1)
			if i >= len(chunks) {
				return
			}
			if !k.chunk(&chunks[i]) {
				failed.Store(true)
			}
		}
	}
	if workers = min(workers, len(chunks)); workers <= 1 {
		work()
		return !failed.Load()
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(work)
	}
	wg.Wait()
	return !failed.Load()
}

// cursor reads JSON at a position.
type cursor struct {
	d []byte
	p int
}

func (c *cursor) ws() {
	for c.p < len(c.d) {
		switch c.d[c.p] {
		case ' ', '\t', '\n', '\r':
			c.p++
		default:
			return
		}
	}
}

// byte reads b, if it comes next.
func (c *cursor) byte(b byte) bool {
	if c.p < len(c.d) && c.d[c.p] == b {
		c.p++
		return true
	}
	return false
}

// null reads null, if it comes next (the byte after it is the caller's to
// check, as after any value).
func (c *cursor) null() bool {
	if bytes.HasPrefix(c.d[c.p:], []byte("null")) {
		c.p += len("null")
		return true
	}
	return false
}

// A string's contents, as str finds them.
const (
	strASCII   = iota // printable ASCII and no escape: the contents are the string
	strUTF8           // no escape, some bytes not ASCII
	strEscaped        // an escape, not checked
)

// str reads the string at c.p and returns what lies between its quotes.
// It refuses control characters, which JSON does, but does not check
// escapes: a caller that takes an escaped string must have encoding/json
// decode it.
func (c *cursor) str() (raw []byte, kind int, ok bool) {
	if !c.byte('"') {
		return nil, 0, false
	}
	start := c.p
	for {
		// Eight bytes at a time up to the first that is not printable
		// ASCII: most of a snapshot is base64 in strings.
		for c.p+8 <= len(c.d) {
			m := unusual(binary.LittleEndian.Uint64(c.d[c.p:]))
			if m != 0 {
				c.p += bits.TrailingZeros64(m) / 8
				break
			}
			c.p += 8
		}
		if c.p >= len(c.d) {
			return nil, 0, false
		}
		switch b := c.d[c.p]; {
		case b == '"':
			c.p++
			return c.d[start : c.p-1], kind, true
		case b < 0x20:
			return nil, 0, false
		case b == '\\':
			kind = strEscaped
			c.p++
		case b >= utf8.RuneSelf && kind == strASCII:
			kind = strUTF8
		}
		c.p++
	}
}

// unusual returns x, eight bytes of a string, with the high bit set in the
// lowest byte that is a quote, a backslash, a control character or not
// ASCII, if any (and maybe in bytes above it), and every other bit clear.
func unusual(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote, backslash := x^(ones*'"'), x^(ones*'\\')
	// A byte b is below n if b-n borrows into its high bit while b's is
	// clear; zero if below 1. A borrow into the byte above one of those is
	// the "maybe".
	return ((x-ones*0x20)&^x | (quote-ones)&^quote | (backslash-ones)&^backslash | x) & highs
}

// members reads the object at c.p and calls member for each of its
// members, with c at the value, which member must read. It refuses names
// that are escaped or not ASCII: encoding/json unescapes names and matches
// them to fields without regard to case, Unicode's included.
func (c *cursor) members(member func(name []byte) bool) bool {
	if !c.byte('{') {
		return false
	}
	c.ws()
	if c.byte('}') {
		return true
	}
	for {
		name, kind, ok := c.str()
		if !ok || kind != strASCII {
			return false
		}
		c.ws()
		if !c.byte(':') {
			return false
		}
		c.ws()
		if !member(name) {
			return false
		}
		c.ws()
		if c.byte('}') {
			return true
		}
		if !c.byte(',') {
			return false
		}
		c.ws()
	}
}

// elements reads the array at c.p and calls element for each of its
// elements, with c at it, which element must read.
func (c *cursor) elements(element func() bool) bool {
	if !c.byte('[') {
		return false
	}
	c.ws()
	if c.byte(']') {
		return true
	}
	for {
		if !element() {
			return false
		}
		c.ws()
		if c.byte(']') {
			return true
		}
		if !c.byte(',') {
			return false
		}
		c.ws()
	}
}

// skip reads the value at c.p, finding its end as it would in valid JSON
// without checking the syntax further.
func (c *cursor) skip() bool {
	depth := 0
	for c.p < len(c.d) {
		switch c.d[c.p] {
		case '"':
			if _, _, ok := c.str(); !ok {
				return false
			}
			if depth == 0 {
				return true
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				return false
			}
			if depth == 0 {
				c.p++
				return true
			}
		case ' ', '\t', '\n', '\r', ',', ':':
			if depth == 0 {
				return false
			}
		default: // a number, true, false or null
			if depth == 0 {
				start := c.p
				for c.p < len(c.d) && bytes.IndexByte([]byte("+-.0123456789Eabcdeflnrstu"), c.d[c.p]) >= 0 {
					c.p++
				}
				return c.p > start
			}
		}
		c.p++
	}
	return false
}

// keyDecoder decodes the keys of snapshots, as encoding/json decodes them
// into fresh values, or reports that it does not take them.
type keyDecoder struct {
	cursor
	// versions is where the versions of keys are cut from, many keys'
	// in one allocation.
	versions []snapshotVersion
	// createdBy is the last creator read: a million keys have a few, and
	// the versions of the same creator share its string.
	createdBy string
}

// chunk decodes the keys of ch.
func (k *keyDecoder) chunk(ch *keysChunk) bool {
	k.p = ch.start
	for i := range ch.keys {
		if i > 0 {
			k.ws()
			if !k.byte(',') {
				return false
			}
			k.ws()
		}
		if !k.key(&ch.keys[i]) {
			return false
		}
	}
	return k.p == ch.end
}

// The fields of snapshotKey, snapshotVersion and KESArgs, as bits: each
// may come once.
const (
	fieldName = 1 << iota
	fieldNext
	fieldRotateEvery
	fieldVersions
	fieldVersion
	fieldType
	fieldSealed
	fieldImported
	fieldKES
	fieldCreatedAt
	fieldCreatedBy
	fieldDisabled
	fieldDeleteAt
	fieldKESFormat
	fieldKESImplicit
	fieldKESSealedHMAC
)

// fields reads an object of fields that field reads: it returns the bit
// of the field named name and whether it read its value, or 0 for a name
// it does not know, which is refused. Each field may come once.
func (k *keyDecoder) fields(field func(name []byte) (bit int, ok bool)) bool {
	seen := 0
	return k.members(func(name []byte) bool {
		bit, ok := field(name)
		if bit == 0 || seen&bit != 0 {
			return false
		}
		seen |= bit
		return ok
	})
}

func (k *keyDecoder) key(sk *snapshotKey) bool {
	return k.fields(func(name []byte) (int, bool) {
		switch string(name) {
		case "name":
			return fieldName, k.string(&sk.Name)
		case "next":
			return fieldNext, k.uint32(&sk.Next)
		case "rotate_every":
			return fieldRotateEvery, k.duration(&sk.RotateEvery)
		case "versions":
			return fieldVersions, k.versionList(&sk.Versions)
		}
		return 0, false
	})
}

// versionList reads the versions of a key into a run of k.versions.
func (k *keyDecoder) versionList(dst *[]snapshotVersion) bool {
	if k.null() {
		return true
	}
	start := len(k.versions)
	ok := k.elements(func() bool {
		if len(k.versions) == cap(k.versions) {
			n := len(k.versions) - start
			grown := make([]snapshotVersion, n, max(256, 2*n))
			copy(grown, k.versions[start:])
			k.versions, start = grown, 0
		}
		k.versions = k.versions[:len(k.versions)+1]
		return k.version(&k.versions[len(k.versions)-1])
	})
	if !ok {
		return false
	}
	if len(k.versions) == start {
		*dst = []snapshotVersion{} // as encoding/json decodes []
	} else {
		*dst = k.versions[start:len(k.versions):len(k.versions)]
	}
	return true
}

func (k *keyDecoder) version(sv *snapshotVersion) bool {
	if k.null() {
		return true
	}
	return k.fields(func(name []byte) (int, bool) {
		switch string(name) {
		case "version":
			return fieldVersion, k.uint32(&sv.Version)
		case "type":
			return fieldType, k.keyType(&sv.Type)
		case "sealed":
			return fieldSealed, k.bytes(&sv.Sealed)
		case "imported":
			return fieldImported, k.bool(&sv.Imported)
		case "kes":
			return fieldKES, k.kes(&sv.KES)
		case "created_at":
			return fieldCreatedAt, k.time(&sv.CreatedAt)
		case "created_by":
			return fieldCreatedBy, k.creator(&sv.CreatedBy)
		case "disabled":
			return fieldDisabled, k.bool(&sv.Disabled)
		case "delete_at":
			return fieldDeleteAt, k.time(&sv.DeleteAt)
		}
		return 0, false
	})
}

// text reads a string, or null, and returns its contents, unescaped; ok
// is false if it is neither.
func (k *keyDecoder) text() (s []byte, null, ok bool) {
	if k.null() {
		return nil, true, true
	}
	start := k.p
	raw, kind, ok := k.str()
	switch {
	case !ok:
		return nil, false, false
	case kind == strASCII || kind == strUTF8 && utf8.Valid(raw):
		return raw, false, true
	}
	// Escapes, or bytes that are not UTF-8, which encoding/json replaces.
	var u string
	if json.Unmarshal(k.d[start:k.p], &u) != nil {
		return nil, false, false
	}
	return []byte(u), false, true
}

func (k *keyDecoder) string(dst *string) bool {
	s, null, ok := k.text()
	if ok && !null {
		*dst = string(s)
	}
	return ok
}

// creator reads a created_by.
func (k *keyDecoder) creator(dst *string) bool {
	s, null, ok := k.text()
	if ok && !null {
		if string(s) != k.createdBy {
			k.createdBy = string(s)
		}
		*dst = k.createdBy
	}
	return ok
}

func (k *keyDecoder) keyType(dst *crypto.KeyType) bool {
	s, null, ok := k.text()
	if !ok || null {
		return ok
	}
	switch string(s) {
	case string(crypto.AES256):
		*dst = crypto.AES256 // the constant's string, not a new one
	case string(crypto.ChaCha20):
		*dst = crypto.ChaCha20
	default:
		*dst = crypto.KeyType(string(s))
	}
	return true
}

// bytes reads base64, as encoding/json reads a []byte.
func (k *keyDecoder) bytes(dst *[]byte) bool {
	s, null, ok := k.text()
	if !ok || null {
		return ok
	}
	b, err := base64.StdEncoding.AppendDecode(nil, s)
	if err != nil {
		return false
	}
	if b == nil {
		b = []byte{} // as encoding/json decodes ""
	}
	*dst = b
	return true
}

// time reads a time as time.Time.UnmarshalJSON does, which encoding/json
// calls with the string as it stands, escapes and all.
func (k *keyDecoder) time(dst *time.Time) bool {
	if k.null() {
		return true
	}
	start := k.p
	if _, _, ok := k.str(); !ok {
		return false
	}
	return dst.UnmarshalJSON(k.d[start:k.p]) == nil
}

func (k *keyDecoder) bool(dst *bool) bool {
	switch {
	case k.null():
	case bytes.HasPrefix(k.d[k.p:], []byte("true")):
		*dst = true
		k.p += len("true")
	case bytes.HasPrefix(k.d[k.p:], []byte("false")):
		*dst = false
		k.p += len("false")
	default:
		return false
	}
	return true
}

func (k *keyDecoder) uint32(dst *uint32) bool {
	if k.null() {
		return true
	}
	n, ok := k.integer(math.MaxUint32)
	if ok {
		*dst = uint32(n) // #nosec G115 -- integer returns at most its limit, math.MaxUint32
	}
	return ok
}

func (k *keyDecoder) duration(dst *time.Duration) bool {
	if k.null() {
		return true
	}
	neg := k.byte('-')
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	n, ok := k.integer(limit)
	switch {
	case !ok:
		return false
	case neg && n == limit:
		*dst = math.MinInt64
	case neg:
		*dst = time.Duration(-int64(n)) // #nosec G115 -- below the limit, 2^63
	default:
		*dst = time.Duration(n) // #nosec G115 -- integer returns at most its limit, math.MaxInt64
	}
	return true
}

// integer reads the digits of a number that is an integer of at most
// limit, in JSON's syntax (no leading zero). Any other number, which
// encoding/json may refuse or read otherwise, is refused.
func (k *keyDecoder) integer(limit uint64) (uint64, bool) {
	start := k.p
	var n uint64
	for ; k.p < len(k.d) && '0' <= k.d[k.p] && k.d[k.p] <= '9'; k.p++ {
		d := uint64(k.d[k.p] - '0')
		if n > (limit-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	switch {
	case k.p == start, k.d[start] == '0' && k.p > start+1:
		return 0, false
	case k.p < len(k.d) && bytes.IndexByte([]byte(".eE"), k.d[k.p]) >= 0:
		return 0, false
	}
	return n, true
}

// kes reads the KES arguments of a version imported from KES.
func (k *keyDecoder) kes(dst **KESArgs) bool {
	if k.null() {
		return true
	}
	a := new(KESArgs)
	ok := k.fields(func(name []byte) (int, bool) {
		switch string(name) {
		case "format":
			return fieldKESFormat, k.string(&a.Format)
		case "implicit":
			return fieldKESImplicit, k.bool(&a.Implicit)
		case "sealed_hmac":
			return fieldKESSealedHMAC, k.bytes(&a.SealedHMAC)
		case "created_at":
			return fieldCreatedAt, k.time(&a.CreatedAt)
		case "created_by":
			return fieldCreatedBy, k.creator(&a.CreatedBy)
		}
		return 0, false
	})
	*dst = a
	return ok
}
