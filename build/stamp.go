package build

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// racyWindow is how long after its last modification a file's metadata
// is not trusted to tell its content: a memo filled from a file modified
// less than this before the memo was filled is not used (it is filled
// again). Timestamps are as coarse as the filesystem keeps them (1 s on
// ext3 and HFS+, 2 s on FAT, the kernel's clock tick on the others), so
// two writes of the same size within one tick leave the same size and
// modification time: only a file that was last written well before it
// was read can be told unchanged by its stamp. This is Git's "racy
// clean" rule.
const racyWindow = 2 * time.Second

// fileStamp is what a file's metadata says of its content: its size, its
// modification time and its identity (device and inode where the system
// has them), so that a file replaced by a rename is a new file whatever
// its size and time. The zero fileStamp is a file that does not exist.
type fileStamp struct {
	fi os.FileInfo
}

// stampFile stamps the file at path; the zero fileStamp if there is none.
func stampFile(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}, nil
	} else if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi: fi}, nil
}

// exists reports whether the file existed when it was stamped.
func (s fileStamp) exists() bool { return s.fi != nil }

// same reports whether s and o stamp one unchanged file, or both no file.
func (s fileStamp) same(o fileStamp) bool {
	if s.fi == nil || o.fi == nil {
		return s.fi == nil && o.fi == nil
	}
	return s.fi.Size() == o.fi.Size() && s.fi.ModTime().Equal(o.fi.ModTime()) && os.SameFile(s.fi, o.fi)
}

// settled reports whether the file was last modified long enough before
// at (when it was stamped, before it was read) that a later write cannot
// leave the same stamp: see racyWindow.
func (s fileStamp) settled(at time.Time) bool {
	return s.fi == nil || s.fi.ModTime().Before(at.Add(-racyWindow))
}

// stampAll stamps the files at paths, in order (see stampFile).
func stampAll(paths []string) ([]fileStamp, error) {
	stamps := make([]fileStamp, len(paths))
	for i, path := range paths {
		s, err := stampFile(path)
		if err != nil {
			return nil, err
		}
		stamps[i] = s
	}
	return stamps, nil
}

// unchanged reports whether a memo filled from files stamped was, at at
// (before they were read), still stands for them, now stamped now: each
// is the file it was, and was written long enough before at that a
// write since would have changed its stamp (see racyWindow).
func unchanged(was, now []fileStamp, at time.Time) bool {
	if len(was) != len(now) {
		return false
	}
	for i, s := range now {
		if !s.same(was[i]) || !s.settled(at) {
			return false
		}
	}
	return true
}

// treeRead is a digest of package directories and their files, with the
// stamps of what it read, taken at at, before each was listed or read:
// it holds while current says so.
type treeRead struct {
	at     time.Time
	paths  []string
	stamps []fileStamp
	sum    string
}

func newTreeRead() *treeRead { return &treeRead{at: time.Now()} }

// current reports whether every file and directory r read is as it was.
func (r *treeRead) current() bool {
	stamps, err := stampAll(r.paths)
	return err == nil && unchanged(r.stamps, stamps, r.at)
}

// stamp records path's stamp, before its contents are read.
func (r *treeRead) stamp(path string) error {
	s, err := stampFile(path)
	r.paths, r.stamps = append(r.paths, path), append(r.stamps, s)
	return err
}

// hashDir writes every regular file of dir, package pkg's directory,
// into h ("pkg/name size", then the contents), stamping dir and each
// file first, and hands each file to each (nil: none). A dir that does
// not exist is fs.ErrNotExist.
func (r *treeRead) hashDir(h io.Writer, dir, pkg string, each func(path string, data []byte)) error {
	if err := r.stamp(dir); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		file := filepath.Join(dir, e.Name())
		if err := r.stamp(file); err != nil {
			return err
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s/%s %d\n", pkg, e.Name(), len(data))
		h.Write(data)
		if each != nil {
			each(file, data)
		}
	}
	return nil
}
