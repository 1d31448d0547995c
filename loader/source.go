package loader

import "github.com/plugind/plugind/build"

// Source is one plugin's source on disk (see build.Source).
type Source = build.Source

// Kind says how a plugin's source is laid out (see build.Kind).
type Kind = build.Kind

// The kinds of source, as in package build.
const (
	KindFile     = build.KindFile
	KindFolder   = build.KindFolder
	KindPrebuilt = build.KindPrebuilt
)
