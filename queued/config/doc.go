// Package config reads and writes queued's config file: Kestrel 1.x's
// format (configgy's), so an existing Kestrel deployment points
// `kpush queued --config` at the file it has. Its output is a
// queued.Config; package queued itself never reads a file.
//
// The format:
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
// Reading goes in three steps, one file each: lex.go turns bytes into
// tokens, parse.go builds a tree of blocks, interp.go maps the tree onto a
// queued.Config: top-level queue keys become Config.Defaults whatever their
// position in the file (configgy resolves inheritance at lookup time), and
// each queues { name { ... } } block is applied over a copy of them (after
// the block it names with inherit="other", if any). Unknown keys are
// logged as warnings naming file:line; errors are *Error values carrying
// file:line:column and wrapping ErrSyntax or ErrValue. write.go writes a
// Config back as a file that reads back to the same Config (the fuzz test
// checks this round trip on every input that parses).
//
// examples/production.conf shows every key queued understands.
package config
