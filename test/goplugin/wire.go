package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/rpc"
	"slices"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/encoding/protowire"
)

// Request and Response are a call and its answer as the RPC transports
// carry them: what a server relaying HTTP to a plugin over RPC must send
// and get back. net/rpc encodes them with gob; gRPC with wireCodec.
type Request struct {
	Method, URL string
	Header      map[string][]string
	Body        []byte
}

type Response struct {
	Status int
	Header map[string][]string
	Body   []byte
}

// toWire is r as a Request.
func toWire(r *http.Request) *Request {
	return &Request{Method: r.Method, URL: r.URL.String(), Header: r.Header}
}

// serveWire runs hello on req in the child.
func serveWire(req *Request) (*Response, error) {
	r, err := http.NewRequest(req.Method, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	r.Header = req.Header
	rec := newRecorder()
	hello(rec, r)
	return &Response{Status: rec.status, Header: rec.header, Body: rec.body}, nil
}

// writeWire writes resp to w.
func writeWire(w http.ResponseWriter, resp *Response) {
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

// The plugin both go-plugin transports dispense.
type helloPlugin struct{}

// net/rpc: go-plugin serves Server's value under the name "Plugin".

type rpcServer struct{}

func (rpcServer) Call(req Request, resp *Response) error {
	r, err := serveWire(&req)
	if err != nil {
		return err
	}
	*resp = *r
	return nil
}

func (helloPlugin) Server(*plugin.MuxBroker) (any, error) { return rpcServer{}, nil }

func (helloPlugin) Client(_ *plugin.MuxBroker, c *rpc.Client) (any, error) {
	return caller(func(w http.ResponseWriter, r *http.Request) error {
		var resp Response
		if err := c.Call("Plugin.Call", toWire(r), &resp); err != nil {
			return err
		}
		writeWire(w, &resp)
		return nil
	}), nil
}

// gRPC: a service of one unary method, described by hand (no protoc
// here), its messages in protobuf's wire format through wireCodec.

type helloService interface {
	Call(context.Context, *Request) (*Response, error)
}

type grpcServer struct{}

func (grpcServer) Call(_ context.Context, req *Request) (*Response, error) { return serveWire(req) }

const callMethod = "/hello.Hello/Call"

var helloDesc = grpc.ServiceDesc{
	ServiceName: "hello.Hello",
	HandlerType: (*helloService)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Call",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			req := new(Request)
			if err := dec(req); err != nil {
				return nil, err
			}
			return srv.(helloService).Call(ctx, req)
		},
	}},
}

func (helloPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(&helloDesc, grpcServer{})
	return nil
}

func (helloPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return caller(func(w http.ResponseWriter, r *http.Request) error {
		var resp Response
		if err := c.Invoke(r.Context(), callMethod, toWire(r), &resp, grpc.CallContentSubtype(wireCodec{}.Name())); err != nil {
			return err
		}
		writeWire(w, &resp)
		return nil
	}), nil
}

// caller relays one HTTP request to the plugin and writes its answer.
type caller func(w http.ResponseWriter, r *http.Request) error

func init() { encoding.RegisterCodec(wireCodec{}) }

// wireCodec encodes Request and Response in protobuf's wire format, as
// generated code for these messages would:
//
//	message Header   { string key = 1; repeated string values = 2; }
//	message Request  { string method = 1; string url = 2; repeated Header header = 3; bytes body = 4; }
//	message Response { int64 status = 1; repeated Header header = 2; bytes body = 3; }
type wireCodec struct{}

func (wireCodec) Name() string { return "hellowire" }

func (wireCodec) Marshal(v any) ([]byte, error) {
	var b []byte
	switch m := v.(type) {
	case *Request:
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, m.Method)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, m.URL)
		b = appendHeader(b, 3, m.Header)
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Body)
	case *Response:
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(m.Status))
		b = appendHeader(b, 2, m.Header)
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Body)
	default:
		return nil, fmt.Errorf("hellowire: cannot marshal %T", v)
	}
	return b, nil
}

func appendHeader(b []byte, field protowire.Number, h map[string][]string) []byte {
	for _, k := range slices.Sorted(maps.Keys(h)) {
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.BytesType)
		e = protowire.AppendString(e, k)
		for _, v := range h[k] {
			e = protowire.AppendTag(e, 2, protowire.BytesType)
			e = protowire.AppendString(e, v)
		}
		b = protowire.AppendTag(b, field, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	return b
}

func (wireCodec) Unmarshal(data []byte, v any) error {
	var header map[string][]string
	var err error
	switch m := v.(type) {
	case *Request:
		m.Header = map[string][]string{}
		header = m.Header
		err = fields(data, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
			switch num {
			case 1:
				m.Method = string(val)
			case 2:
				m.URL = string(val)
			case 3:
				return consumeHeader(val, header)
			case 4:
				m.Body = slices.Clone(val)
			}
			return nil
		})
	case *Response:
		m.Header = map[string][]string{}
		header = m.Header
		err = fields(data, func(num protowire.Number, typ protowire.Type, val []byte, n uint64) error {
			switch num {
			case 1:
				m.Status = int(n)
			case 2:
				return consumeHeader(val, header)
			case 3:
				m.Body = slices.Clone(val)
			}
			return nil
		})
	default:
		return fmt.Errorf("hellowire: cannot unmarshal into %T", v)
	}
	return err
}

// fields calls f for each field of a message: val for length-delimited
// ones, n for varints.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, val []byte, n uint64) error) error {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return fmt.Errorf("hellowire: %w", protowire.ParseError(l))
		}
		b = b[l:]
		var val []byte
		var n uint64
		switch typ {
		case protowire.BytesType:
			val, l = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			n, l = protowire.ConsumeVarint(b)
		default:
			return fmt.Errorf("hellowire: field %d: unexpected wire type %d", num, typ)
		}
		if l < 0 {
			return fmt.Errorf("hellowire: field %d: %w", num, protowire.ParseError(l))
		}
		b = b[l:]
		if err := f(num, typ, val, n); err != nil {
			return err
		}
	}
	return nil
}

func consumeHeader(b []byte, h map[string][]string) error {
	var key string
	var values []string
	err := fields(b, func(num protowire.Number, _ protowire.Type, val []byte, _ uint64) error {
		switch num {
		case 1:
			key = string(val)
		case 2:
			values = append(values, string(val))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if key == "" {
		return errors.New("hellowire: header without a key")
	}
	h[key] = values
	return nil
}
