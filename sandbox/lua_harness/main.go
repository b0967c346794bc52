// Command argocd-lua-health runs a resource health script the way Argo CD v3.6 runs one from
// argocd-cm (util/lua in github.com/argoproj/argo-cd/v3, ExecuteHealthLua), in the same Lua VM
// (github.com/yuin/gopher-lua v1.1.2) and with the same JSON encoder for the result
// (layeh.com/gopher-json at the commit Argo CD pins).
//
//	argocd-lua-health [-open-libs] SCRIPT.lua [OBJECT.json|-]
//
// prints the health Argo CD would record as one JSON line, {"status": ..., "message": ...},
// or `null` when the script returns nil (Argo CD then has no health for the object). A Lua
// error goes to stderr with exit status 1 (Argo CD reports it as the object's health error).
//
// What is reproduced, in Argo CD's order:
//   - standard libraries skipped unless -open-libs (argocd-cm's
//     `resource.customizations.useOpenLibs.<group>_<kind>`), then package, base and table opened;
//   - a 1 s deadline on the VM's context;
//   - the object decoded as Kubernetes' unstructured JSON decoder leaves it (integers int64,
//     other numbers float64), then converted as Argo CD's decodeValue does: maps -> tables
//     (string keys), arrays -> tables appended from index 1, numbers -> LNumber, strings ->
//     LString, booleans -> LBool, null -> nil; set as the global `obj`;
//   - the value on top of the stack afterwards: a table is JSON-encoded with gopher-json and
//     read into {status, message}; an empty table (encoded as `[]`) is an empty health; a status
//     outside Healthy/Progressing/Degraded/Suspended/Missing/Unknown becomes Unknown with Argo
//     CD's message; nil is no health; anything else is an error.
//
// Not reproduced: Argo CD's reduced `os` library (os.time, os.date only). A script that uses it
// fails here instead of passing untested; ours do not.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

// The message gitops-engine/Argo CD gives an unknown status code (util/lua, invalidHealthStatus).
const invalidHealthStatus = "Lua returned an invalid health status"

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

var validStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

func main() {
	args := os.Args[1:]
	openLibs := false
	if len(args) > 0 && args[0] == "-open-libs" {
		openLibs, args = true, args[1:]
	}
	if len(args) < 1 || len(args) > 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua-health [-open-libs] SCRIPT.lua [OBJECT.json|-]")
		os.Exit(2)
	}
	script, err := os.ReadFile(args[0])
	if err != nil {
		fail(err)
	}
	var in io.Reader = os.Stdin
	if len(args) == 2 && args[1] != "-" {
		f, err := os.Open(args[1])
		if err != nil {
			fail(err)
		}
		defer f.Close()
		in = f
	}
	obj, err := readObject(in)
	if err != nil {
		fail(fmt.Errorf("object: %w", err))
	}
	hs, err := run(obj, string(script), openLibs)
	if err != nil {
		fail(err)
	}
	out, err := json.Marshal(hs)
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// readObject decodes one JSON object with numbers kept exact, then turns them into what
// unstructured.UnmarshalJSON yields: int64 for integers, float64 for the rest.
func readObject(r io.Reader) (map[string]any, error) {
	data, err := io.ReadAll(r) // all of it: a writer never sees its pipe closed early
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	m, ok := normalize(v).(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

func normalize(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return i
		}
		f, _ := strconv.ParseFloat(string(t), 64)
		return f
	case []any:
		for i := range t {
			t[i] = normalize(t[i])
		}
		return t
	case map[string]any:
		for k := range t {
			t[k] = normalize(t[k])
		}
		return t
	}
	return v
}

// toLua is the conversion Argo CD applies to obj.Object before `l.SetGlobal("obj", ...)`.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}

func run(obj map[string]any, script string, openLibs bool) (*healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true},
			lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1*time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	fn, err := l.LoadString(script)
	if err != nil {
		return nil, err
	}
	l.Push(fn)
	if err := l.PCall(0, lua.MultRet, nil); err != nil {
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
			apiErr.StackTrace = "" // as Argo CD does before showing the error
		}
		return nil, err
	}
	ret := l.Get(-1)
	switch ret.Type() {
	case lua.LTNil:
		return nil, nil
	case lua.LTTable:
	default:
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
	}
	encoded, err := luajson.Encode(ret)
	if err != nil {
		return nil, err
	}
	hs := &healthStatus{}
	if err := json.Unmarshal(encoded, hs); err != nil {
		// Argo CD meant an empty table (gopher-json writes `[]`), but its errors.As matches
		// every type error: any of them gives an empty health, not checked further.
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return &healthStatus{}, nil
		}
		return nil, err
	}
	if !validStatus[hs.Status] {
		return &healthStatus{Status: "Unknown", Message: invalidHealthStatus}, nil
	}
	return hs, nil
}
