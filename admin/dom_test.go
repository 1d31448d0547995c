package admin_test

import (
	"encoding/xml"
	"errors"
	"io"
	"slices"
	"strings"
)

// node is an element of a parsed page: enough of a DOM for the tests to
// query by id, class and tag. Pages are parsed by encoding/xml in its
// HTML mode (non-strict, HTML void elements and entities), which keeps
// the module free of a dependency used only by tests; the browser test
// checks the page in a real browser.
type node struct {
	Tag      string
	Attr     map[string]string
	Children []*node
	text     strings.Builder // text directly inside, in order with children lost
	all      strings.Builder // all text inside, children's included
	parent   *node
}

// Text is all the text inside n.
func (n *node) Text() string { return n.all.String() }

// parseDoc parses an HTML page or fragment.
func parseDoc(page string) (*node, error) {
	d := xml.NewDecoder(strings.NewReader(page))
	d.Strict = false
	d.AutoClose = append(slices.Clone(xml.HTMLAutoClose), "source", "track", "wbr")
	d.Entity = xml.HTMLEntity
	root := &node{Tag: "#root", Attr: map[string]string{}}
	cur := root
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := &node{Tag: strings.ToLower(t.Name.Local), Attr: map[string]string{}, parent: cur}
			for _, a := range t.Attr {
				n.Attr[strings.ToLower(a.Name.Local)] = a.Value
			}
			cur.Children = append(cur.Children, n)
			cur = n
		case xml.EndElement:
			if cur.parent != nil {
				cur = cur.parent
			}
		case xml.CharData:
			cur.text.Write(t)
			for n := cur; n != nil; n = n.parent {
				n.all.Write(t)
			}
		}
	}
	return root, nil
}

// find returns the elements under n, in document order, for which match
// is true.
func (n *node) find(match func(*node) bool) []*node {
	var out []*node
	for _, c := range n.Children {
		if match(c) {
			out = append(out, c)
		}
		out = append(out, c.find(match)...)
	}
	return out
}

func (n *node) byID(id string) *node {
	if found := n.find(func(c *node) bool { return c.Attr["id"] == id }); len(found) > 0 {
		return found[0]
	}
	return nil
}

func (n *node) byClass(class string) []*node {
	return n.find(func(c *node) bool { return slices.Contains(strings.Fields(c.Attr["class"]), class) })
}

func (n *node) byTag(tag string) []*node {
	return n.find(func(c *node) bool { return c.Tag == tag })
}
