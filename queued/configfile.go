package queued

// The config file format is Kestrel 1.x's, i.e. configgy's:
//
//	file      = { statement } .
//	statement = key ( "=" | "?=" ) value     // ?= sets only if not yet set
//	          | key ( "on" | "off" | "true" | "false" )   // journal off
//	          | key [ "(" { attr "=" string } ")" ] "{" { statement } "}"
//	          | "<" key { attr "=" string } ">" { statement } "</" key ">"  // old form
//	key       = word { "." word } .           // a.b = v is a { b = v }
//	value     = string | word | "[" { ( string | word ) [ "," ] } "]" .
//
// Words are runs of letters, digits and _ - . + : / $; strings are double
// quoted with \" \\ \n \r \t \uXXXX escapes; # starts a comment to the end
// of the line; line breaks are plain white space, so several statements
// may share a line. include is refused. A key given twice keeps the last
// value; a block given twice is merged.
//
// Parsing builds a tree of blocks first, then interprets it: top-level
// queue keys become Config.Defaults whatever their position in the file
// (configgy resolves inheritance at lookup time), and each queues { name
// { ... } } block is applied over a copy of them (after the block it
// names with inherit="other", if any). Errors carry file:line:column.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kpush/kpush/internal/queuename"
)

// Errors returned by ParseConfig and LoadConfigFile, for errors.Is. The
// concrete error is a *ConfigError naming the file, line and column.
var (
	// ErrConfigSyntax: the file is not in the Kestrel 1.x (configgy) format.
	ErrConfigSyntax = errors.New("config syntax error")
	// ErrConfigValue: a known key has a value of the wrong kind or range.
	ErrConfigValue = errors.New("invalid config value")
)

// ConfigError is a syntax or value error at a position in a config file.
type ConfigError struct {
	File string
	Line int // 1-based
	Col  int // 1-based, in bytes
	Msg  string
	Kind error // ErrConfigSyntax or ErrConfigValue
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

func (e *ConfigError) Unwrap() error { return e.Kind }

// LoadConfigFile reads a Kestrel 1.x config file and returns the
// configuration it describes, starting from DefaultConfig. Unknown keys are
// logged as warnings (slog default logger) naming file:line; syntax and
// value errors are returned as *ConfigError.
func LoadConfigFile(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("open config file %s: %w", path, err)
	}
	defer f.Close()
	return ParseConfig(f, path)
}

// ParseConfig parses a config file read from r; name is used in messages.
func ParseConfig(r io.Reader, name string) (Config, error) {
	return parseConfig(r, name, slog.Default())
}

// Reload re-reads the config file at path and returns c with its queue
// settings (Defaults and Queues) replaced by the file's; server settings
// (listen address, data directory, limits on connections...) stay as they
// are, since they cannot change under a running server. This is what the
// `reload` command applies. Command-line flags that override queue settings
// must be applied again by the caller. With an empty path (the server was
// started without a file) it returns c unchanged.
func (c Config) Reload(path string) (Config, error) {
	if path == "" {
		return c, nil
	}
	f, err := LoadConfigFile(path)
	if err != nil {
		return c, fmt.Errorf("reload: %w", err)
	}
	c.Defaults = f.Defaults
	c.Queues = f.Queues
	return c, nil
}

// Dump writes the effective settings of every queue that has its own block,
// in name order, in the format of Kestrel's dump_config: for each queue
//
//	queue 'name' {
//	  max_items=0
//	  ...
//	}
//
// with \r\n line ends, and no trailing END (the protocol handler adds it).
func (c Config) Dump(w io.Writer) error {
	names := make([]string, 0, len(c.Queues))
	for name := range c.Queues {
		names = append(names, name)
	}
	slices.Sort(names)
	return c.DumpQueues(w, names)
}

// DumpQueues is Dump for the given queue names (typically the queues that
// exist on the server), each with the settings QueueConfig returns for it.
func (c Config) DumpQueues(w io.Writer, names []string) error {
	bw := bufio.NewWriter(w)
	for _, name := range names {
		fmt.Fprintf(bw, "queue '%s' {\r\n", name)
		for _, kv := range c.QueueConfig(name).settings() {
			fmt.Fprintf(bw, "  %s=%s\r\n", kv[0], kv[1])
		}
		bw.WriteString("}\r\n")
	}
	return bw.Flush()
}

// settings lists a queue's settings as key/value pairs, in Kestrel 1.x's
// dump_config order followed by the keys Kestrel 1.x did not have.
// Durations are in milliseconds, as in the file.
func (q QueueConfig) settings() [][2]string {
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	ms := func(d time.Duration) string { return i64(d.Milliseconds()) }
	expireTo := q.ExpireToQueue
	if expireTo == "" {
		expireTo = "(none)"
	}
	return [][2]string{
		{"max_items", i64(q.MaxItems)},
		{"max_size", i64(q.MaxSize)},
		{"max_item_size", i64(q.MaxItemSize)},
		{"max_age", ms(q.MaxAge)},
		{"max_journal_size", i64(q.MaxJournalSize)},
		{"max_memory_size", i64(q.MaxMemorySize)},
		{"max_journal_overflow", strconv.Itoa(q.MaxJournalOverflow)},
		{"max_journal_size_absolute", i64(q.MaxJournalSizeAbsolute)},
		{"discard_old_when_full", strconv.FormatBool(q.DiscardOldWhenFull)},
		{"journal", strconv.FormatBool(q.Journal)},
		{"sync_journal", q.Sync.String()},
		{"expire_to_queue", expireTo},
		{"max_expire_sweep", strconv.Itoa(q.MaxExpireSweep)},
		{"fanout_only", strconv.FormatBool(q.FanoutOnly)},
		{"open_transaction_timeout", ms(q.OpenTransactionTimeout)},
		{"max_queue_age", ms(q.MaxQueueAge)},
	}
}

// String renders the policy as sync_journal accepts it: "always", "never"
// or an interval such as "10ms".
func (p SyncPolicy) String() string {
	switch p.Mode {
	case SyncAlways:
		return "always"
	case SyncNever:
		return "never"
	case SyncInterval:
		return p.Interval.String()
	}
	return fmt.Sprintf("SyncMode(%d)", int(p.Mode))
}

// MinSyncInterval is the shortest interval sync_journal accepts: below it
// the fsync ticker would cost more than syncing every write.
const MinSyncInterval = time.Millisecond

// ParseSyncPolicy parses "always", "never", "true" (always), "false"
// (never, Kestrel 1.x's meaning) or an interval of at least
// MinSyncInterval ("10ms", or a bare integer in milliseconds). The --sync
// flag uses it too.
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch strings.ToLower(s) {
	case "always", "true", "on":
		return SyncPolicy{Mode: SyncAlways}, nil
	case "never", "false", "off":
		return SyncPolicy{Mode: SyncNever}, nil
	}
	d, err := parseDuration(s, time.Millisecond)
	if err != nil || d < MinSyncInterval {
		return SyncPolicy{}, fmt.Errorf("sync policy %q: want always, never or an interval of at least 1ms like 10ms", s)
	}
	return SyncPolicy{Mode: SyncInterval, Interval: d}, nil
}

// parseDuration reads a Go duration ("1s", "10ms") or a bare non-negative
// integer counted in unit.
func parseDuration(s string, unit time.Duration) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > int64(1<<62)/int64(unit) {
			return 0, fmt.Errorf("duration %q out of range", s)
		}
		return time.Duration(n) * unit, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

// parseSize reads a non-negative byte count: a bare integer, or one with a
// binary suffix K, M, G, T (also KB/KiB and so on; all powers of 1024, as
// Kestrel's storage conversions are).
func parseSize(s string) (int64, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	var mult int64
	switch strings.ToUpper(s[i:]) {
	case "":
		mult = 1
	case "K", "KB", "KIB":
		mult = 1 << 10
	case "M", "MB", "MIB":
		mult = 1 << 20
	case "G", "GB", "GIB":
		mult = 1 << 30
	case "T", "TB", "TIB":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("size %q: want a non-negative integer of bytes, optionally with K, M, G or T", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a non-negative integer of bytes up to 2^62, optionally with K, M, G or T", s)
	}
	return n * mult, nil
}

// ---- lexer ----

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
	return &ConfigError{File: l.file, Line: p.line, Col: p.col, Msg: fmt.Sprintf(format, args...), Kind: ErrConfigSyntax}
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

// ---- parser: builds a tree of blocks, then interpret() maps it to Config ----

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

// ---- interpretation ----

// kestrelUnusedKeys are keys found in Kestrel 1.x config files that queued
// accepts and ignores (logged at debug): they tune the JVM server or MINA.
var kestrelUnusedKeys = map[string]bool{
	"max_threads": true, "protocol": true, "multifile": true,
}

// interpreter walks the parsed tree and fills a Config.
type interpreter struct {
	file string
	log  *slog.Logger
	cfg  Config
	port string // from `port`, joined with host at the end
	host string
}

func (in *interpreter) valueErr(v *cfgValue, key, want string) error {
	return &ConfigError{File: in.file, Line: v.pos.line, Col: v.pos.col,
		Msg: fmt.Sprintf("%s: want %s, got %s", key, want, v.describe()), Kind: ErrConfigValue}
}

func (v *cfgValue) describe() string {
	switch v.kind {
	case valString:
		return fmt.Sprintf("string %q", v.text)
	case valList:
		return "a list"
	}
	return strconv.Quote(v.text)
}

func (in *interpreter) warnUnknown(e *cfgEntry, where string) {
	in.log.Warn("unknown config key ignored", "at", fmt.Sprintf("%s:%d", in.file, e.pos.line), "key", e.key, "block", where)
}

func (in *interpreter) scalar(e *cfgEntry, want string) (*cfgValue, error) {
	if e.block != nil {
		return nil, &ConfigError{File: in.file, Line: e.pos.line, Col: e.pos.col,
			Msg: fmt.Sprintf("%s: want %s, got a block", e.key, want), Kind: ErrConfigValue}
	}
	if e.value.kind == valList {
		return nil, in.valueErr(e.value, e.key, want)
	}
	return e.value, nil
}

func (in *interpreter) str(e *cfgEntry) (string, error) {
	v, err := in.scalar(e, "a string")
	if err != nil {
		return "", err
	}
	return v.text, nil
}

func (in *interpreter) boolean(e *cfgEntry) (bool, error) {
	v, err := in.scalar(e, "true, false, on or off")
	if err != nil {
		return false, err
	}
	switch strings.ToLower(v.text) {
	case "true", "on", "yes":
		return true, nil
	case "false", "off", "no":
		return false, nil
	}
	return false, in.valueErr(v, e.key, "true, false, on or off")
}

func (in *interpreter) integer(e *cfgEntry, lo, hi int64) (int64, error) {
	want := fmt.Sprintf("an integer from %d to %d", lo, hi)
	v, err := in.scalar(e, want)
	if err != nil {
		return 0, err
	}
	n, perr := strconv.ParseInt(v.text, 10, 64)
	if perr != nil || n < lo || n > hi {
		return 0, in.valueErr(v, e.key, want)
	}
	return n, nil
}

func (in *interpreter) size(e *cfgEntry) (int64, error) {
	const want = "a non-negative byte count (like 134217728 or 128M)"
	v, err := in.scalar(e, want)
	if err != nil {
		return 0, err
	}
	n, perr := parseSize(v.text)
	if perr != nil {
		return 0, in.valueErr(v, e.key, want)
	}
	return n, nil
}

func (in *interpreter) duration(e *cfgEntry, unit time.Duration, unitName string) (time.Duration, error) {
	want := fmt.Sprintf("a non-negative integer of %s or a duration like 1s", unitName)
	v, err := in.scalar(e, want)
	if err != nil {
		return 0, err
	}
	d, perr := parseDuration(v.text, unit)
	if perr != nil {
		return 0, in.valueErr(v, e.key, want)
	}
	return d, nil
}

func (in *interpreter) server(root *cfgBlock) error {
	c := &in.cfg
	for _, e := range root.entries {
		var err error
		switch e.key {
		case "port":
			var n int64
			n, err = in.integer(e, 0, 65535)
			in.port = strconv.FormatInt(n, 10)
		case "host":
			in.host, err = in.str(e)
		case "queue_path":
			c.DataDir, err = in.str(e)
		case "timeout": // Kestrel 1.x: seconds
			c.ClientTimeout, err = in.duration(e, time.Second, "seconds")
		case "client_timeout":
			c.ClientTimeout, err = in.duration(e, time.Millisecond, "milliseconds")
		case "max_open_transactions":
			var n int64
			n, err = in.integer(e, 1, 1<<20)
			c.MaxOpenTransactions = int(n)
		case "max_connections":
			var n int64
			n, err = in.integer(e, 0, 1<<30)
			c.MaxConnections = int(n)
		case "expiration_timer_frequency":
			c.ExpirationTimerFrequency, err = in.duration(e, time.Millisecond, "milliseconds")
		case "expiration_timer_frequency_seconds": // Kestrel 1.x
			c.ExpirationTimerFrequency, err = in.duration(e, time.Second, "seconds")
		case "total_memory_size":
			c.TotalMemorySize, err = in.size(e)
		case "enable_shutdown_command", "shutdown":
			c.EnableShutdown, err = in.boolean(e)
		case "admin_listen":
			c.AdminListen, err = in.str(e)
			if err == nil && c.AdminListen != "" {
				if _, _, serr := net.SplitHostPort(c.AdminListen); serr != nil {
					err = in.valueErr(e.value, e.key, "host:port")
				}
			}
		case "log":
			err = in.logBlock(e)
		case "queues":
			// handled by queues()
			if e.block == nil {
				err = &ConfigError{File: in.file, Line: e.pos.line, Col: e.pos.col,
					Msg: "queues: want a block of queue blocks: queues { name { ... } }", Kind: ErrConfigValue}
			}
		default:
			var known bool
			known, err = in.queueKey(&c.Defaults, e)
			if !known {
				if kestrelUnusedKeys[e.key] {
					in.log.Debug("kestrel config key not used by queued", "at", fmt.Sprintf("%s:%d", in.file, e.pos.line), "key", e.key)
				} else {
					in.warnUnknown(e, "top level")
				}
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (in *interpreter) logBlock(e *cfgEntry) error {
	if e.block == nil {
		return &ConfigError{File: in.file, Line: e.pos.line, Col: e.pos.col,
			Msg: "log: want a block: log { filename = \"...\" level = \"info\" }", Kind: ErrConfigValue}
	}
	for _, le := range e.block.entries {
		switch le.key {
		case "filename":
			f, err := in.str(le)
			if err != nil {
				return err
			}
			in.cfg.LogFile = f
		case "level":
			v, err := in.scalar(le, "a log level")
			if err != nil {
				return err
			}
			lvl, ok := kestrelLogLevel(v.text)
			if !ok {
				return in.valueErr(v, "log level", "debug, info, warning or error")
			}
			in.cfg.LogLevel = lvl
		default:
			// roll, console, utc, truncate, syslog_*, ...: configgy logging
			// options queued's slog setup has no use for.
			in.log.Debug("log option not used by queued", "at", fmt.Sprintf("%s:%d", in.file, le.pos.line), "key", le.key)
		}
	}
	return nil
}

// kestrelLogLevel maps configgy's level names to the slog names --log-level
// accepts.
func kestrelLogLevel(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "trace", "debug", "all":
		return "debug", true
	case "info":
		return "info", true
	case "warning", "warn":
		return "warn", true
	case "error", "critical", "fatal", "off":
		return "error", true
	}
	return "", false
}

// queueKey applies one per-queue key to q. It reports false for keys that
// are not queue settings.
func (in *interpreter) queueKey(q *QueueConfig, e *cfgEntry) (bool, error) {
	var err error
	switch e.key {
	case "max_items":
		q.MaxItems, err = in.integer(e, 0, 1<<62)
	case "max_size":
		q.MaxSize, err = in.size(e)
	case "max_item_size":
		q.MaxItemSize, err = in.size(e)
	case "max_age":
		q.MaxAge, err = in.duration(e, time.Millisecond, "milliseconds")
	case "max_memory_size":
		q.MaxMemorySize, err = in.size(e)
	case "max_journal_size":
		q.MaxJournalSize, err = in.size(e)
	case "max_journal_overflow":
		var n int64
		n, err = in.integer(e, 0, 1<<20)
		q.MaxJournalOverflow = int(n)
	case "max_journal_size_absolute":
		q.MaxJournalSizeAbsolute, err = in.size(e)
	case "discard_old_when_full":
		q.DiscardOldWhenFull, err = in.boolean(e)
	case "journal", "keep_journal":
		q.Journal, err = in.boolean(e)
	case "sync_journal":
		var v *cfgValue
		v, err = in.scalar(e, "always, never, true, false or an interval like 10ms")
		if err == nil {
			var perr error
			q.Sync, perr = ParseSyncPolicy(v.text)
			if perr != nil {
				err = in.valueErr(v, e.key, "always, never, true, false or an interval like 10ms")
			}
		}
	case "expire_to_queue", "move_expired_to":
		q.ExpireToQueue, err = in.str(e)
		if err == nil && q.ExpireToQueue != "" && !queuename.Valid(q.ExpireToQueue) {
			err = in.valueErr(e.value, e.key, "a queue name of letters, digits, '_', '-' and at most one '+'")
		}
	case "max_expire_sweep":
		var n int64
		n, err = in.integer(e, 0, 1<<30)
		q.MaxExpireSweep = int(n)
	case "fanout_only":
		q.FanoutOnly, err = in.boolean(e)
	case "open_transaction_timeout":
		q.OpenTransactionTimeout, err = in.duration(e, time.Millisecond, "milliseconds")
	case "max_queue_age":
		q.MaxQueueAge, err = in.duration(e, time.Millisecond, "milliseconds")
	default:
		return false, nil
	}
	return true, err
}

func (in *interpreter) queues(root *cfgBlock) error {
	e, ok := root.index["queues"]
	if !ok || e.block == nil {
		return nil
	}
	blocks := e.block
	for _, qe := range blocks.entries {
		if qe.block == nil {
			return &ConfigError{File: in.file, Line: qe.pos.line, Col: qe.pos.col,
				Msg: fmt.Sprintf("queues: %s: want a queue block: %s { max_items = ... }", qe.key, qe.key), Kind: ErrConfigValue}
		}
		if !queuename.Valid(qe.key) {
			return &ConfigError{File: in.file, Line: qe.pos.line, Col: qe.pos.col,
				Msg: fmt.Sprintf("queue name %q: want letters, digits, '_' and '-'", qe.key), Kind: ErrConfigValue}
		}
		q := in.cfg.Defaults
		if err := in.applyQueueBlock(&q, blocks, qe.block, map[string]bool{}); err != nil {
			return err
		}
		if q.ExpireToQueue == qe.key {
			// Written in the block: a mistake. Inherited from the defaults:
			// meant for the other queues (see Config.QueueConfig).
			for _, key := range []string{"expire_to_queue", "move_expired_to"} {
				if e, ok := qe.block.index[key]; ok {
					return &ConfigError{File: in.file, Line: e.pos.line, Col: e.pos.col,
						Msg: fmt.Sprintf("queue %q: %s names the queue itself", qe.key, key), Kind: ErrConfigValue}
				}
			}
			q.ExpireToQueue = ""
		}
		in.cfg.Queues[qe.key] = q
	}
	return nil
}

// applyQueueBlock applies b's settings over q, after those of the block it
// inherits from (configgy's inherit="name" attribute), if any.
func (in *interpreter) applyQueueBlock(q *QueueConfig, siblings, b *cfgBlock, seen map[string]bool) error {
	if seen[b.name] {
		return &ConfigError{File: in.file, Line: b.pos.line, Col: b.pos.col,
			Msg: fmt.Sprintf("queue %q: inherit loop", b.name), Kind: ErrConfigValue}
	}
	seen[b.name] = true
	if b.inherit != "" {
		parent, ok := siblings.index[b.inherit]
		if !ok || parent.block == nil {
			return &ConfigError{File: in.file, Line: b.pos.line, Col: b.pos.col,
				Msg: fmt.Sprintf("queue %q: inherit=%q: no such queue block", b.name, b.inherit), Kind: ErrConfigValue}
		}
		if err := in.applyQueueBlock(q, siblings, parent.block, seen); err != nil {
			return err
		}
	}
	for _, e := range b.entries {
		known, err := in.queueKey(q, e)
		if err != nil {
			return err
		}
		if !known {
			if kestrelUnusedKeys[e.key] {
				in.log.Debug("kestrel config key not used by queued", "at", fmt.Sprintf("%s:%d", in.file, e.pos.line), "key", e.key)
			} else {
				in.warnUnknown(e, "queue "+b.name)
			}
		}
	}
	return nil
}

func parseConfig(r io.Reader, name string, log *slog.Logger) (Config, error) {
	src, err := io.ReadAll(r)
	if err != nil {
		return Config{}, fmt.Errorf("read config %s: %w", name, err)
	}
	lx := &lexer{src: src, line: 1, col: 1, file: name}
	p := &parser{lex: lx, file: name}
	if err := p.advance(); err != nil {
		return Config{}, err
	}
	root := newBlock("", pos{1, 1})
	if err := p.parseBody(root, 0, tokEOF); err != nil {
		return Config{}, err
	}

	in := &interpreter{file: name, log: log, cfg: DefaultConfig()}
	host, port, _ := net.SplitHostPort(in.cfg.Listen)
	in.host, in.port = host, port
	if err := in.server(root); err != nil {
		return Config{}, err
	}
	in.cfg.Listen = net.JoinHostPort(in.host, in.port)
	if err := in.queues(root); err != nil {
		return Config{}, err
	}
	return in.cfg, nil
}

// WriteConfigFile writes c as a config file that ParseConfig reads back to
// the same Config: server keys, the queue defaults at top level, then a
// queues block with every queue's full settings. `kpush queued
// --print-config` style tools and the fuzz test use it.
func (c Config) WriteConfigFile(w io.Writer) error {
	bw := bufio.NewWriter(w)
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("write config: listen address %q: %w", c.Listen, err)
	}
	q := quoteConfigString
	fmt.Fprintf(bw, "host = %s\nport = %s\nqueue_path = %s\n", q(host), port, q(c.DataDir))
	if c.AdminListen != "" {
		fmt.Fprintf(bw, "admin_listen = %s\n", q(c.AdminListen))
	}
	fmt.Fprintf(bw, "max_open_transactions = %d\n", c.MaxOpenTransactions)
	fmt.Fprintf(bw, "client_timeout = %q\n", c.ClientTimeout.String())
	fmt.Fprintf(bw, "max_connections = %d\n", c.MaxConnections)
	fmt.Fprintf(bw, "expiration_timer_frequency = %q\n", c.ExpirationTimerFrequency.String())
	fmt.Fprintf(bw, "total_memory_size = %d\n", c.TotalMemorySize)
	fmt.Fprintf(bw, "enable_shutdown_command = %t\n", c.EnableShutdown)
	fmt.Fprintf(bw, "log {\n  filename = %s\n  level = %s\n}\n", q(c.LogFile), q(c.LogLevel))
	writeQueueSettings(bw, c.Defaults, "")
	names := make([]string, 0, len(c.Queues))
	for name := range c.Queues {
		names = append(names, name)
	}
	slices.Sort(names)
	bw.WriteString("queues {\n")
	for _, name := range names {
		fmt.Fprintf(bw, "  %s {\n", name)
		writeQueueSettings(bw, c.Queues[name], "    ")
		bw.WriteString("  }\n")
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

func writeQueueSettings(w io.Writer, qc QueueConfig, indent string) {
	for _, kv := range qc.settings() {
		v := kv[1]
		switch kv[0] {
		case "expire_to_queue":
			v = quoteConfigString(qc.ExpireToQueue)
		case "max_age", "open_transaction_timeout", "max_queue_age":
			// settings() rounds to milliseconds; write the exact duration.
			d := map[string]time.Duration{"max_age": qc.MaxAge,
				"open_transaction_timeout": qc.OpenTransactionTimeout, "max_queue_age": qc.MaxQueueAge}[kv[0]]
			v = strconv.Quote(d.String())
		case "sync_journal":
			v = strconv.Quote(v)
		}
		fmt.Fprintf(w, "%s%s = %s\n", indent, kv[0], v)
	}
}

// quoteConfigString quotes s with the escapes the lexer reads back; other
// bytes, even invalid UTF-8, are written as they are.
func quoteConfigString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 || c == 0x7f {
				fmt.Fprintf(&b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
