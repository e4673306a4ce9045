package audit

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// appendJSONs appends the events as lines of JSON, as encoding/json would
// encode them, without reflection: audit records are written on the hot
// path of every request, and encoding/json costs several microseconds per
// event. The leading fields of a
// record (time, node, identity, IP, API) are the same for all the commands
// of a batch: they are encoded once for a run of records that share them.
func appendJSONs(b []byte, events []Event) []byte {
	var prefix []byte
	for i := range events {
		e := &events[i]
		if i > 0 && samePrefix(&events[i-1], e) {
			b = append(b, prefix...)
		} else {
			start := len(b)
			b = appendPrefix(b, e)
			prefix = b[start:len(b):len(b)]
		}
		b = appendRest(b, e)
	}
	return b
}

func samePrefix(a, b *Event) bool {
	return a.Time.Equal(b.Time) && a.Node == b.Node && a.Identity == b.Identity && a.IP == b.IP && a.API == b.API
}

// appendPrefix appends the start of a record, up to and with its API.
func appendPrefix(b []byte, e *Event) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","node":`...)
	b = appendString(b, e.Node)
	b = appendField(b, "identity", e.Identity)
	b = appendField(b, "ip", e.IP)
	b = append(b, `,"api":`...)
	return appendString(b, e.API)
}

// appendRest appends the rest of a record after appendPrefix.
func appendRest(b []byte, e *Event) []byte {
	b = append(b, `,"command":`...)
	b = appendString(b, e.Command)
	b = appendField(b, "enclave", e.Enclave)
	b = appendField(b, "resource", e.Resource)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = appendField(b, "error", e.Error)
	b = append(b, `,"latency_ns":`...)
	b = strconv.AppendInt(b, int64(e.Latency), 10)
	return append(b, "}\n"...)
}

// appendField appends ,"name":value for a non-empty value (omitempty).
func appendField(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":`...)
	return appendString(b, value)
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does:
// quotes, backslashes, control characters, <, > and &, U+2028 and U+2029;
// invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			case '\b':
				b = append(b, `\b`...)
			case '\f':
				b = append(b, `\f`...)
			default:
				b = append(b, `\u00`...)
				b = append(b, hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
