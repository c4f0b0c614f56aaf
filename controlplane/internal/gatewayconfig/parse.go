package gatewayconfig

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// MaxFileBytes bounds a gateway.yaml.
const MaxFileBytes = 1 << 20

// maxDepth bounds how deep a file's collections nest ([ and { inside each other, or
// block indentation in steps of two): the format needs a handful, and the parser's
// cost grows faster than the depth.
const maxDepth = 32

// Document is a parsed gateway.yaml: the file and its syntax tree, which knows
// where each setting is.
type Document struct {
	Name string // the file's name, for messages
	File File
	tree *ast.File
}

// Problem is one thing wrong with a file: where, the setting's path and why.
type Problem struct {
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Path    string `json:"path"` // dotted, e.g. gateway.per_client_limits.default.requests_per_minute
	Message string `json:"message"`
}

func (p Problem) String() string {
	where := fmt.Sprintf("%d:%d", p.Line, p.Column)
	if p.Path == "" {
		return where + ": " + p.Message
	}
	return where + ": " + p.Path + ": " + p.Message
}

// Problems is every problem of a file, as one error.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Parse reads a gateway.yaml. A file that is not YAML, holds a setting the format
// does not know, or gives a setting a value of the wrong type is refused as
// Problems, with the line and column of the first such problem (YAML decoding stops
// there); the rest of the file is checked once it decodes.
func Parse(name string, data []byte) (*Document, error) {
	if len(data) > MaxFileBytes {
		return nil, Problems{{Line: 1, Column: 1, Message: fmt.Sprintf("the file is larger than %d bytes", MaxFileBytes)}}
	}
	if p := tooDeep(data); p != nil {
		return nil, Problems{*p}
	}
	for _, t := range lexer.Tokenize(string(data)) {
		if t.Type == token.AnchorType || t.Type == token.AliasType {
			// An alias is a copy the decoder makes as often as it is named, so a few
			// lines could stand for gigabytes; the format has no use for them.
			return nil, Problems{{Line: t.Position.Line, Column: t.Position.Column, Message: "anchors (&) and aliases (*) are not supported: write each setting out"}}
		}
	}
	tree, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, yamlProblem(err)
	}
	d := &Document{Name: name, tree: tree}
	if err := yaml.UnmarshalWithOptions(data, &d.File, yaml.DisallowUnknownField()); err != nil {
		return nil, yamlProblem(err)
	}
	switch d.File.APIVersion {
	case APIVersion:
	case "":
		return nil, Problems{{Line: 1, Column: 1, Path: "apiVersion", Message: "is required: apiVersion: " + APIVersion}}
	default:
		line, col := d.Pos("apiVersion")
		return nil, Problems{{Line: line, Column: col, Path: "apiVersion",
			Message: fmt.Sprintf("%q is not a version this control plane reads: use %s", d.File.APIVersion, APIVersion)}}
	}
	return d, nil
}

// yamlProblem is a YAML library error as a Problem at its token.
func yamlProblem(err error) Problems {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		pos := ye.GetToken().Position
		return Problems{{Line: pos.Line, Column: pos.Column, Message: ye.GetMessage()}}
	}
	return Problems{{Line: 1, Column: 1, Message: err.Error()}}
}

// Pos is the line and column of the setting at path (keys from the top), or of the
// nearest enclosing one the file has; 1:1 when there is none.
func (d *Document) Pos(path ...string) (line, column int) {
	for n := len(path); n > 0; n-- {
		b := (&yaml.PathBuilder{}).Root()
		for _, k := range path[:n] {
			b = step(b, k)
		}
		node, err := b.Build().FilterFile(d.tree)
		if err == nil && node != nil && node.GetToken() != nil {
			pos := node.GetToken().Position
			return pos.Line, pos.Column
		}
	}
	return 1, 1
}

// indexed is a path element that names a list item: "roles[2]".
var indexed = regexp.MustCompile(`^(.*)\[(\d+)\]$`)

// step is b one element further: a key, a list index ("3", as a Problem's path
// holds anomaly_detection's items) or a key's list item ("roles[2]", as the admin
// API names fields).
func step(b *yaml.PathBuilder, k string) *yaml.PathBuilder {
	if i, err := strconv.ParseUint(k, 10, 32); err == nil {
		return b.Index(uint(i))
	}
	if m := indexed.FindStringSubmatch(k); m != nil {
		i, _ := strconv.ParseUint(m[2], 10, 32)
		return b.Child(m[1]).Index(uint(i))
	}
	return b.Child(k)
}

// problem is a Problem at path.
func (d *Document) problem(message string, path ...string) Problem {
	line, col := d.Pos(path...)
	return Problem{Line: line, Column: col, Path: strings.Join(path, "."), Message: message}
}

// ToYAML renders a JSON document as YAML, keeping its keys' order.
func ToYAML(jsonDoc []byte) ([]byte, error) { return yaml.JSONToYAML(jsonDoc) }

// tooDeep finds where data nests deeper than maxDepth: flow collections ([ and {
// outside quotes and comments) or block indentation, before any parser sees it.
func tooDeep(data []byte) *Problem {
	line, col, depth := 1, 0, 0
	var quote byte
	comment := false
	for i, c := range data {
		col++
		switch {
		case c == '\n':
			line, col, comment = line+1, 0, false
			if quote == '\'' || quote == '"' {
				continue // a quoted scalar may span lines
			}
			indent := 0
			for indent < len(data)-i-1 && data[i+1+indent] == ' ' {
				indent++
			}
			if indent > 2*maxDepth {
				return &Problem{Line: line + 1, Column: 1, Message: fmt.Sprintf("nests deeper than %d levels", maxDepth)}
			}
			continue
		case comment:
			continue
		case quote != 0:
			if c == quote {
				quote = 0
			}
			continue
		}
		switch c {
		case '#':
			comment = i == 0 || data[i-1] == ' ' || data[i-1] == '\t'
		case '\'', '"':
			quote = c
		case '[', '{':
			if depth++; depth > maxDepth {
				return &Problem{Line: line, Column: col, Message: fmt.Sprintf("nests deeper than %d levels", maxDepth)}
			}
		case ']', '}':
			depth = max(depth-1, 0)
		}
	}
	return nil
}
