package event

import (
	"unicode/utf8"
)

// Printable returns s with what could forge or hide text on a terminal
// escaped: control characters (C0, DEL and C1, among them newline, carriage
// return and the ESC that starts terminal sequences), the line and
// paragraph separators, the bidirectional overrides, and invalid UTF-8.
// Newline, carriage return and tab become \n, \r and \t, other bytes
// below 0x80 and invalid bytes \xHH, other runes \uHHHH; everything else,
// backslashes included, is kept as it is. Every string a container
// controls (a comm, a socket path, a container name, a rule's message
// that quotes them) goes through it, or AppendPrintable, before it is
// printed for a person, so that it stays on its one line. It returns s
// itself, without allocating, when there is nothing to escape.
func Printable(s string) string {
	if isPrintable(s) {
		return s
	}
	return string(AppendPrintable(make([]byte, 0, len(s)+16), s))
}

// AppendPrintable appends Printable(s) to b; it allocates nothing beyond
// growing b.
func AppendPrintable(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			b = append(b, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = appendEscape(b, 'x', uint32(c), 2)
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r < 0x80:
			b = appendEscape(b, 'x', uint32(r), 2)
		case escapeRune(r):
			b = appendEscape(b, 'u', uint32(r), 4)
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return b
}

// isPrintable reports whether Printable would return s unchanged.
func isPrintable(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		if c < 0x80 {
			return false
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || escapeRune(r) {
			return false
		}
		i += n
	}
	return true
}

// escapeRune reports whether a rune of 0x80 or above is escaped: the C1
// controls (0x9b is a one-byte CSI on some terminals), the line and
// paragraph separators, and the bidirectional marks, embeddings, overrides
// and isolates, which reorder what a terminal shows.
func escapeRune(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f,
		r == 0x061c, r == 0x200e, r == 0x200f,
		r == 0x2028, r == 0x2029,
		r >= 0x202a && r <= 0x202e,
		r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

const hexDigits = "0123456789abcdef"

// appendEscape appends \x or \u and v in width hex digits.
func appendEscape(b []byte, kind byte, v uint32, width int) []byte {
	b = append(b, '\\', kind)
	for shift := 4 * (width - 1); shift >= 0; shift -= 4 {
		b = append(b, hexDigits[v>>uint(shift)&0xf])
	}
	return b
}
