// Command eso-gotemplate renders Go templates with the External Secrets Operator's own template
// engine (pkg/template/v2 of github.com/external-secrets/external-secrets, i.e. text/template
// with ESO's sprig fork and ESO's extra functions, "engineVersion: v2"), so our Python engine
// (secretsync/reconcile/gotemplate) can be tested against the real thing.
//
// It reads JSON lines on stdin, one case a line:
//
//	{"tpl": "<base64 template>", "data": {"key": "<base64 value>", ...}}
//
// and writes one JSON line a case, in order: {"out": "<base64 output>"} or {"err": "<message>"}.
// Each case is rendered as ESO renders one key of spec.target.template.data (scope Values,
// target Data). Values travel as base64 so bytes are exact in both directions.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"

	esapi "github.com/external-secrets/external-secrets/apis/externalsecrets/v1"
	estemplate "github.com/external-secrets/external-secrets/pkg/template/v2"
	corev1 "k8s.io/api/core/v1"
)

type request struct {
	Tpl  string            `json:"tpl"`
	Data map[string]string `json:"data"`
}

type response struct {
	Out *string `json:"out,omitempty"`
	Err *string `json:"err,omitempty"`
}

func render(line []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return nil, fmt.Errorf("bad request: %w", err)
	}
	tpl, err := base64.StdEncoding.DecodeString(req.Tpl)
	if err != nil {
		return nil, fmt.Errorf("bad template encoding: %w", err)
	}
	data := make(map[string][]byte, len(req.Data))
	for k, v := range req.Data {
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("bad value encoding: %w", err)
		}
		data[k] = raw
	}
	secret := &corev1.Secret{}
	tplMap := map[string][]byte{"out": tpl}
	if err := estemplate.Execute(tplMap, data, esapi.TemplateScopeValues, esapi.TemplateTargetData, secret); err != nil {
		return nil, err
	}
	return secret.Data["out"], nil
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	for in.Scan() {
		out, err := render(in.Bytes())
		var resp response
		if err != nil {
			msg := err.Error()
			resp.Err = &msg
		} else {
			s := base64.StdEncoding.EncodeToString(out)
			resp.Out = &s
		}
		if err := enc.Encode(resp); err != nil {
			os.Exit(2)
		}
		_ = w.Flush()
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
