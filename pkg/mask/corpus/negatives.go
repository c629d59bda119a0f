package corpus

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
)

// negativeTemplates hold no secret: placeholders, ids, hashes, references
// to secrets and ordinary code and prose.
var negativeTemplates = []string{
	`OPENAI_API_KEY=sk-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX`,
	`GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx`,
	`aws_access_key_id = AKIAXXXXXXXXXXXXXXXX`,
	`"password": "<your-password-here>"`,
	`password: ${DB_PASSWORD}`,
	`token: ${{ secrets.GITHUB_TOKEN }}`,
	`db_password = os.environ["DB_PASSWORD"]`,
	`secret := cfg.Secret`,
	`apiKey: process.env.API_KEY,`,
	`postgres://app:${PGPASSWORD}@db:5432/app`,
	`postgres://app@db:5432/app`,
	`request id {uuid} finished in 12ms`,
	`commit {h:40} (HEAD -> main) Merge pull request #{d:4}`,
	`sha256:{h:64}  app.tar.gz`,
	`"integrity": "sha512-{b:86}=="`,
	`image: ghcr.io/chaperone-dev/sidecar@sha256:{h:64}`,
	`ulid={U:26} seq={d:5}`,
	`"max_tokens": {d:4}, "temperature": 0.2`,
	`"token_type": "Bearer", "expires_in": 3600`,
	`Set your STRIPE_SECRET_KEY in the dashboard before deploying.`,
	`The function returns the token once the user is authenticated.`,
	`if err := verifyPassword(ctx, user, hash); err != nil {`,
	`for i := range tokens { total += len(tokens[i]) }`,
	`GET /api/v1/sessions/{uuid}/events HTTP/1.1`,
	`etag: "{h:32}"`,
	`data: {"id":"chatcmpl-{a:29}","object":"chat.completion.chunk"}`,
	`Version 1.{d:2}.{d:1} released on 2026-0{d:1}-1{d:1}`,
	`key-value stores such as etcd keep their data in a B-tree`,
	`sk_live_... and rk_live_... keys must never be committed`,
	`-----BEGIN CERTIFICATE-----`,
	`ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{b:43} dev@laptop`,
	`random blob {b:64}`,
	`x-request-id: {h:16}`,
}

// Negatives returns n lines that hold no secret, deterministically for
// seed; some carry random base64 of non-secret data.
func Negatives(seed uint64, n int) []string {
	r := rand.New(rand.NewPCG(seed+1, seed^0x51f15e))
	out := make([]string, 0, n)
	for i := range n {
		if i%10 == 9 {
			out = append(out, fmt.Sprintf("avatar: %s", base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("pixels %d %d %d", r.IntN(1e6), r.IntN(1e6), r.IntN(1e6))))))
			continue
		}
		out = append(out, fill(r, negativeTemplates[i%len(negativeTemplates)]))
	}
	return out
}
