package config

import (
	"fmt"
	"strconv"
	"strings"
)

type pos struct{ line, col int }

type tokKind int

const (
	tokEOF         tokKind = iota
	tokWord                // a bare word: key, number, boolean, duration
	tokString              // a double-quoted string, unescaped
	tokAssign              // =
	tokSetIfNew            // ?=
	tokLBrace              // {
	tokRBrace              // }
	tokLBracket            // [
	tokRBracket            // ]
	tokComma               // ,
	tokLParen              // (
	tokRParen              // )
	tokLAngle              // <
	tokLAngleSlash         // </
	tokRAngle              // >
)

var tokNames = map[tokKind]string{
	tokEOF: "end of file", tokWord: "a word", tokString: "a string",
	tokAssign: "'='", tokSetIfNew: "'?='", tokLBrace: "'{'", tokRBrace: "'}'",
	tokLBracket: "'['", tokRBracket: "']'", tokComma: "','", tokLParen: "'('",
	tokRParen: "')'", tokLAngle: "'<'", tokLAngleSlash: "'</'", tokRAngle: "'>'",
}

var singleByteTokens = map[byte]tokKind{'=': tokAssign, '{': tokLBrace, '}': tokRBrace,
	'[': tokLBracket, ']': tokRBracket, ',': tokComma, '(': tokLParen, ')': tokRParen, '>': tokRAngle}

type token struct {
	kind tokKind
	text string
	pos  pos
}

func (t token) describe() string {
	switch t.kind {
	case tokWord:
		return fmt.Sprintf("%q", t.text)
	case tokString:
		return fmt.Sprintf("string %q", t.text)
	}
	return tokNames[t.kind]
}

type lexer struct {
	src       []byte
	off       int
	line, col int
	file      string
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '-' || c == '.' || c == '+' || c == ':' || c == '/' || c == '$' || c >= 0x80
}

func (l *lexer) errorf(p pos, format string, args ...any) error {
	return &Error{File: l.file, Line: p.line, Col: p.col, Msg: fmt.Sprintf(format, args...), Kind: ErrSyntax}
}

func (l *lexer) advance() byte {
	c := l.src[l.off]
	l.off++
	if c == '\n' {
		l.line++
		l.col = 1
	} else {
		l.col++
	}
	return c
}

func (l *lexer) next() (token, error) {
	// Skip white space and comments.
	for l.off < len(l.src) {
		c := l.src[l.off]
		if c == '#' {
			for l.off < len(l.src) && l.src[l.off] != '\n' {
				l.advance()
			}
			continue
		}
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v' {
			l.advance()
			continue
		}
		break
	}
	p := pos{l.line, l.col}
	if l.off >= len(l.src) {
		return token{kind: tokEOF, pos: p}, nil
	}
	c := l.src[l.off]
	if k, ok := singleByteTokens[c]; ok {
		l.advance()
		return token{kind: k, pos: p}, nil
	}
	switch {
	case c == '?':
		l.advance()
		if l.off < len(l.src) && l.src[l.off] == '=' {
			l.advance()
			return token{kind: tokSetIfNew, pos: p}, nil
		}
		return token{}, l.errorf(p, "unexpected '?': expected '?='")
	case c == '<':
		l.advance()
		if l.off < len(l.src) && l.src[l.off] == '/' {
			l.advance()
			return token{kind: tokLAngleSlash, pos: p}, nil
		}
		return token{kind: tokLAngle, pos: p}, nil
	case c == '"':
		return l.lexString(p)
	case isWordByte(c):
		start := l.off
		for l.off < len(l.src) && isWordByte(l.src[l.off]) {
			l.advance()
		}
		return token{kind: tokWord, text: string(l.src[start:l.off]), pos: p}, nil
	}
	return token{}, l.errorf(p, "unexpected character %q: expected a key, a value, '=', '{' or '}'", rune(c))
}

func (l *lexer) lexString(p pos) (token, error) {
	l.advance() // opening quote
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			return token{}, l.errorf(p, "unterminated string: expected a closing '\"'")
		}
		c := l.advance()
		switch c {
		case '"':
			return token{kind: tokString, text: b.String(), pos: p}, nil
		case '\n':
			return token{}, l.errorf(p, "unterminated string: expected a closing '\"' before the end of the line")
		case '\\':
			if l.off >= len(l.src) {
				return token{}, l.errorf(p, "unterminated string: expected a closing '\"'")
			}
			ep := pos{l.line, l.col}
			e := l.advance()
			switch e {
			case '"', '\\', '$':
				b.WriteByte(e)
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if l.off+4 > len(l.src) {
					return token{}, l.errorf(ep, "bad \\u escape: expected 4 hex digits")
				}
				n, err := strconv.ParseUint(string(l.src[l.off:l.off+4]), 16, 16)
				if err != nil {
					return token{}, l.errorf(ep, "bad \\u escape: expected 4 hex digits")
				}
				for range 4 {
					l.advance()
				}
				b.WriteRune(rune(n))
			default:
				return token{}, l.errorf(ep, "unknown escape '\\%c' in string: expected one of \\\" \\\\ \\n \\r \\t \\uXXXX", e)
			}
		default:
			b.WriteByte(c)
		}
	}
}
