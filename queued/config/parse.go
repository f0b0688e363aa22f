package config

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/kpush/kpush/queued"
)

func parseConfig(r io.Reader, name string, log *slog.Logger) (queued.Config, error) {
	src, err := io.ReadAll(r)
	if err != nil {
		return queued.Config{}, fmt.Errorf("read config %s: %w", name, err)
	}
	lx := &lexer{src: src, line: 1, col: 1, file: name}
	p := &parser{lex: lx, file: name}
	if err := p.advance(); err != nil {
		return queued.Config{}, err
	}
	root := newBlock("", pos{1, 1})
	if err := p.parseBody(root, 0, tokEOF); err != nil {
		return queued.Config{}, err
	}

	in := &interpreter{file: name, log: log, cfg: queued.DefaultConfig()}
	host, port, _ := net.SplitHostPort(in.cfg.Listen)
	in.host, in.port = host, port
	if err := in.server(root); err != nil {
		return queued.Config{}, err
	}
	in.cfg.Listen = net.JoinHostPort(in.host, in.port)
	if err := in.queues(root); err != nil {
		return queued.Config{}, err
	}
	return in.cfg, nil
}

type valueKind int

const (
	valWord valueKind = iota
	valString
	valList
)

type cfgValue struct {
	kind valueKind
	text string
	list []cfgValue
	pos  pos
}

type cfgEntry struct {
	key   string
	pos   pos
	value *cfgValue // nil for a block
	block *cfgBlock
}

type cfgBlock struct {
	name    string
	pos     pos
	inherit string // (inherit="other") attribute, for queue blocks
	entries []*cfgEntry
	index   map[string]*cfgEntry
}

func newBlock(name string, p pos) *cfgBlock {
	return &cfgBlock{name: name, pos: p, index: map[string]*cfgEntry{}}
}

// set stores a value, replacing an earlier one with the same key (the last
// assignment wins, as in configgy) unless onlyIfNew.
func (b *cfgBlock) set(key string, p pos, v cfgValue, onlyIfNew bool) {
	if e, ok := b.index[key]; ok {
		if onlyIfNew {
			return
		}
		e.pos, e.value, e.block = p, &v, nil
		return
	}
	e := &cfgEntry{key: key, pos: p, value: &v}
	b.entries = append(b.entries, e)
	b.index[key] = e
}

// child returns the sub-block named key, creating it; a block given twice
// is merged.
func (b *cfgBlock) child(key string, p pos) *cfgBlock {
	if e, ok := b.index[key]; ok && e.block != nil {
		return e.block
	}
	nb := newBlock(key, p)
	if e, ok := b.index[key]; ok {
		e.pos, e.value, e.block = p, nil, nb
		return nb
	}
	e := &cfgEntry{key: key, pos: p, block: nb}
	b.entries = append(b.entries, e)
	b.index[key] = e
	return nb
}

// maxConfigDepth bounds block nesting so a hostile file cannot exhaust the
// stack.
const maxConfigDepth = 64

type parser struct {
	lex  *lexer
	tok  token
	file string
}

func (p *parser) advance() error {
	t, err := p.lex.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) expected(what string) error {
	return p.lex.errorf(p.tok.pos, "expected %s, found %s", what, p.tok.describe())
}

func isBoolWord(s string) bool {
	switch strings.ToLower(s) {
	case "true", "false", "on", "off":
		return true
	}
	return false
}

// parseBody parses statements into b until '}' (brace), '</name>' (angle) or
// end of file (top level).
func (p *parser) parseBody(b *cfgBlock, depth int, closeKind tokKind) error {
	if depth > maxConfigDepth {
		return p.lex.errorf(p.tok.pos, "blocks nested deeper than %d", maxConfigDepth)
	}
	for {
		switch p.tok.kind {
		case tokEOF:
			if closeKind == tokEOF {
				return nil
			}
			if closeKind == tokRBrace {
				return p.lex.errorf(p.tok.pos, "expected '}' to close block %q opened at line %d, found end of file", b.name, b.pos.line)
			}
			return p.lex.errorf(p.tok.pos, "expected '</%s>' to close block opened at line %d, found end of file", b.name, b.pos.line)
		case tokRBrace:
			if closeKind != tokRBrace {
				return p.expected("a key")
			}
			return p.advance()
		case tokLAngleSlash:
			if closeKind != tokLAngleSlash {
				return p.expected("a key")
			}
			if err := p.advance(); err != nil {
				return err
			}
			if p.tok.kind != tokWord || p.tok.text != b.name {
				return p.expected(fmt.Sprintf("'%s>' to close block opened at line %d", b.name, b.pos.line))
			}
			if err := p.advance(); err != nil {
				return err
			}
			if p.tok.kind != tokRAngle {
				return p.expected("'>'")
			}
			return p.advance()
		case tokLAngle:
			// Old configgy section syntax: <name> ... </name>.
			if err := p.advance(); err != nil {
				return err
			}
			if p.tok.kind != tokWord {
				return p.expected("a block name after '<'")
			}
			name, at := p.tok.text, p.tok.pos
			if err := p.advance(); err != nil {
				return err
			}
			inherit, err := p.parseAttrs(tokRAngle)
			if err != nil {
				return err
			}
			nb := b.child(name, at)
			if inherit != "" {
				nb.inherit = inherit
			}
			if err := p.parseBody(nb, depth+1, tokLAngleSlash); err != nil {
				return err
			}
		case tokWord:
			if err := p.parseStatement(b, depth); err != nil {
				return err
			}
		default:
			return p.expected("a key")
		}
	}
}

// parseStatement parses one `key = value`, `key ?= value`, `key on|off`,
// `key { ... }` or `key (inherit="x") { ... }`.
func (p *parser) parseStatement(b *cfgBlock, depth int) error {
	key, at := p.tok.text, p.tok.pos
	if key == "include" {
		return p.lex.errorf(at, "include is not supported: put the included settings in this file")
	}
	if err := p.advance(); err != nil {
		return err
	}
	// A dotted key a.b.c = v is the same as a { b { c = v } }.
	parts := strings.Split(key, ".")
	for _, part := range parts {
		if part == "" || !validKey(part) {
			return p.lex.errorf(at, "bad key %q: expected letters, digits, '_' and '-'", key)
		}
	}
	target := b
	for _, part := range parts[:len(parts)-1] {
		target = target.child(part, at)
	}
	key = parts[len(parts)-1]

	switch p.tok.kind {
	case tokAssign, tokSetIfNew:
		onlyIfNew := p.tok.kind == tokSetIfNew
		if err := p.advance(); err != nil {
			return err
		}
		v, err := p.parseValue()
		if err != nil {
			return err
		}
		target.set(key, at, v, onlyIfNew)
		return nil
	case tokWord:
		if !isBoolWord(p.tok.text) {
			return p.expected(fmt.Sprintf("'=', '{', on or off after key %q", key))
		}
		target.set(key, at, cfgValue{kind: valWord, text: p.tok.text, pos: p.tok.pos}, false)
		return p.advance()
	case tokLParen:
		if err := p.advance(); err != nil {
			return err
		}
		inherit, err := p.parseAttrs(tokRParen)
		if err != nil {
			return err
		}
		if p.tok.kind != tokLBrace {
			return p.expected("'{' after block attributes")
		}
		if err := p.advance(); err != nil {
			return err
		}
		nb := target.child(key, at)
		nb.inherit = inherit
		return p.parseBody(nb, depth+1, tokRBrace)
	case tokLBrace:
		if err := p.advance(); err != nil {
			return err
		}
		return p.parseBody(target.child(key, at), depth+1, tokRBrace)
	}
	return p.expected(fmt.Sprintf("'=', '{', on or off after key %q", key))
}

// parseAttrs parses `name="value"` pairs up to and including end; only
// inherit is meaningful.
func (p *parser) parseAttrs(end tokKind) (inherit string, err error) {
	for p.tok.kind == tokWord {
		name := p.tok.text
		if err := p.advance(); err != nil {
			return "", err
		}
		if p.tok.kind != tokAssign {
			return "", p.expected(fmt.Sprintf("'=' after attribute %q", name))
		}
		if err := p.advance(); err != nil {
			return "", err
		}
		if p.tok.kind != tokString {
			return "", p.expected(fmt.Sprintf("a quoted string for attribute %q", name))
		}
		if name == "inherit" {
			inherit = p.tok.text
		}
		if err := p.advance(); err != nil {
			return "", err
		}
	}
	if p.tok.kind != end {
		return "", p.expected(tokNames[end] + " to end the block attributes")
	}
	return inherit, p.advance()
}

func (p *parser) parseValue() (cfgValue, error) {
	switch p.tok.kind {
	case tokString, tokWord:
		kind := valWord
		if p.tok.kind == tokString {
			kind = valString
		}
		v := cfgValue{kind: kind, text: p.tok.text, pos: p.tok.pos}
		return v, p.advance()
	case tokLBracket:
		v := cfgValue{kind: valList, pos: p.tok.pos}
		if err := p.advance(); err != nil {
			return v, err
		}
		for p.tok.kind != tokRBracket {
			if p.tok.kind != tokString && p.tok.kind != tokWord {
				return v, p.expected("a list item or ']'")
			}
			item, err := p.parseValue()
			if err != nil {
				return v, err
			}
			v.list = append(v.list, item)
			if p.tok.kind == tokComma {
				if err := p.advance(); err != nil {
					return v, err
				}
			}
		}
		return v, p.advance()
	}
	return cfgValue{}, p.expected("a value (a number, a quoted string, true/false/on/off or a [list])")
}

func validKey(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
