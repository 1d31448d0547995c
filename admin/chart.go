package admin

import (
	"strconv"
	"strings"
	"time"

	"github.com/plugind/plugind/internal/reqstats"
)

// Chart geometry, in SVG user units.
const (
	chartW = 180
	chartH = 36
)

// chart is one small line chart, drawn server-side as SVG polylines.
type chart struct {
	Title string   // what it shows, with its scale
	Lines []series // drawn in order
}

type series struct {
	Class  string // CSS class: its colour
	Points string // the polyline's points attribute
}

// points turns values into a polyline across the chart, scaled to top.
func points(values []float64, top float64) string {
	var b strings.Builder
	step := float64(chartW) / float64(max(1, len(values)-1))
	for i, v := range values {
		y := float64(chartH)
		if top > 0 {
			y = chartH - v/top*(chartH-2) // 2 units of headroom for the stroke
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(float64(i)*step, 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
	}
	return b.String()
}

// charts draws a plugin's window: requests, errors, and p50/p99 latency
// per bucket.
func charts(w reqstats.Window) []chart {
	n := len(w.Points)
	reqs, errs := make([]float64, n), make([]float64, n)
	p50, p99 := make([]float64, n), make([]float64, n)
	var topReq float64
	var topLat time.Duration
	for i, p := range w.Points {
		reqs[i], errs[i] = float64(p.Requests), float64(p.Errors)
		p50[i], p99[i] = float64(p.P50), float64(p.P99)
		topReq = max(topReq, reqs[i])
		topLat = max(topLat, p.P99)
	}
	per := reqstats.Bucket.String()
	return []chart{
		{Title: "requests per " + per + " (max " + strconv.Itoa(int(topReq)) + ")", Lines: []series{{"req", points(reqs, topReq)}, {"err", points(errs, topReq)}}},
		{Title: "latency p50 and p99 per " + per + " (max " + fmtDur(topLat) + ")", Lines: []series{{"p50", points(p50, float64(topLat))}, {"p99", points(p99, float64(topLat))}}},
	}
}

// fmtDur prints d short: 850µs, 12.3ms, 1.2s.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
}

// fmtBytes prints n in KiB or MiB.
func fmtBytes(n int64) string {
	switch {
	case n < 1<<10:
		return strconv.FormatInt(n, 10) + " B"
	case n < 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}
