package corpus

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
)

// spec generates secrets for one rule: gen returns the secret and the
// value it is written as; name is what the value is called in context.
type spec struct {
	rule    string
	name    string
	gen     func(r *rand.Rand) (secret, value string)
	noProse bool // the rule needs "name = value" syntax
}

// tmpl is a spec whose value is the secret, from a template.
func tmpl(rule, name, t string) spec {
	return spec{rule: rule, name: name, gen: func(r *rand.Rand) (string, string) {
		s := fill(r, t)
		return s, s
	}}
}

// inside is a spec whose secret sits inside a larger value: the template's
// "@@" is replaced by the secret from secretTmpl.
func inside(rule, name, valueTmpl, secretTmpl string) spec {
	return spec{rule: rule, name: name, gen: func(r *rand.Rand) (string, string) {
		s := fill(r, secretTmpl)
		return s, strings.Replace(fill(r, valueTmpl), "@@", s, 1)
	}}
}

var specs = []spec{
	tmpl("aws-access-key-id", "AWS_ACCESS_KEY_ID", "AKIA{B32:16}"),
	tmpl("aws-secret-access-key", "AWS_SECRET_ACCESS_KEY", "{b:40}"),
	tmpl("aws-session-token", "AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2Vj{b:300}"),
	tmpl("gcp-api-key", "GOOGLE_API_KEY", "AIza{w:35}"),
	{rule: "gcp-service-account-key", name: "credentials", gen: func(r *rand.Rand) (string, string) {
		body, block := pemBlock(r, "PRIVATE KEY", 1190)
		b, _ := json.MarshalIndent(map[string]string{
			"type": "service_account", "project_id": "agents-" + fill(r, "{l:6}"),
			"private_key_id": fill(r, "{h:40}"), "private_key": block + "\n",
			"client_email": "agent@agents.iam.gserviceaccount.com",
		}, "", "  ")
		return body, string(b)
	}},
	tmpl("gcp-oauth-client-secret", "GOOGLE_CLIENT_SECRET", "GOCSPX-{w:28}"),
	tmpl("google-oauth-access-token", "access", "ya29.a0{w:150}"),
	tmpl("azure-storage-account-key", "AZURE_STORAGE_KEY", "{b:86}=="),
	inside("azure-storage-account-key", "AZURE_STORAGE_CONNECTION_STRING",
		"DefaultEndpointsProtocol=https;AccountName=agents{l:6};AccountKey=@@;EndpointSuffix=core.windows.net", "{b:86}=="),
	tmpl("azure-client-secret", "AZURE_CLIENT_SECRET", "{a:3}{d:1}Q~{az:34}"),
	inside("azure-sas-token", "blob_url",
		"https://agents{l:6}.blob.core.windows.net/builds/app.tgz?sv=2022-11-02&ss=b&srt=o&sp=r&se=2026-01-01T00:00:00Z&spr=https&sig=@@", "{a:43}%3D"),
	tmpl("digitalocean-token", "DIGITALOCEAN_TOKEN", "dop_v1_{h:64}"),
	tmpl("heroku-api-key", "HEROKU_API_KEY", "{uuid}"),
	tmpl("heroku-api-key-v2", "HEROKU_API_KEY", "HRKU-{w:60}"),
	tmpl("alibaba-access-key-id", "ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI{a:20}"),
	tmpl("github-pat", "GITHUB_TOKEN", "ghp_{a:36}"),
	tmpl("github-oauth-token", "GH_OAUTH", "gho_{a:36}"),
	tmpl("github-user-token", "GH_USER", "ghu_{a:36}"),
	tmpl("github-app-token", "GH_INSTALLATION", "ghs_{a:36}"),
	tmpl("github-refresh-token", "GH_REFRESH", "ghr_{a:76}"),
	tmpl("github-fine-grained-pat", "GH_PAT", "github_pat_{a:22}_{a:59}"),
	tmpl("gitlab-pat", "GITLAB_TOKEN", "glpat-{w:20}"),
	tmpl("gitlab-deploy-token", "GITLAB_DEPLOY", "gldt-{w:20}"),
	tmpl("gitlab-runner-token", "RUNNER", "glrt-{w:20}"),
	tmpl("gitlab-trigger-token", "TRIGGER", "glptt-{h:40}"),
	tmpl("gitlab-token", "FEED", "glft-{w:20}"),
	tmpl("bitbucket-app-password", "BITBUCKET", "ATBB{a:32}"),
	tmpl("slack-bot-token", "SLACK_BOT_TOKEN", "xoxb-{d:12}-{d:13}-{a:24}"),
	tmpl("slack-user-token", "SLACK_USER_TOKEN", "xoxp-{d:12}-{d:12}-{d:13}-{h:32}"),
	tmpl("slack-app-token", "SLACK_APP_TOKEN", "xapp-1-A{U:10}-{d:13}-{h:64}"),
	tmpl("slack-token", "SLACK_REFRESH", "xoxe-1-{a:140}"),
	inside("slack-webhook-url", "SLACK_WEBHOOK", "https://hooks.slack.com/services/T{U:8}/B{U:10}/@@", "{a:24}"),
	inside("discord-webhook-url", "DISCORD_WEBHOOK", "https://discord.com/api/webhooks/{d:18}/@@", "{w:68}"),
	tmpl("discord-bot-token", "DISCORD_BOT_TOKEN", "M{a:23}.{w:6}.{w:38}"),
	tmpl("telegram-bot-token", "TELEGRAM_BOT_TOKEN", "{d:10}:AA{w:33}"),
	inside("microsoft-teams-webhook", "TEAMS_WEBHOOK",
		"https://contoso.webhook.office.com/webhookb2/{uuid}@{uuid}/IncomingWebhook/@@/{uuid}", "{h:32}"),
	tmpl("stripe-secret-key", "STRIPE_SECRET_KEY", "sk_live_{a:99}"),
	tmpl("stripe-restricted-key", "STRIPE_KEY", "rk_live_{a:99}"),
	tmpl("stripe-publishable-key", "STRIPE_PK", "pk_live_{a:99}"),
	tmpl("stripe-webhook-secret", "STRIPE_WEBHOOK", "whsec_{a:32}"),
	tmpl("square-access-token", "SQUARE_ACCESS_TOKEN", "EAAA{w:60}"),
	tmpl("square-oauth-secret", "SQUARE_SECRET", "sq0csp-{w:43}"),
	tmpl("braintree-access-token", "BRAINTREE", "access_token$production${l:16}${h:32}"),
	tmpl("paypal-client-secret", "PAYPAL_CLIENT_SECRET", "E{w:79}"),
	tmpl("openai-api-key", "OPENAI_API_KEY", "sk-proj-{w:156}"),
	tmpl("openai-api-key", "OPENAI_KEY", "sk-{a:20}T3BlbkFJ{a:20}"),
	tmpl("anthropic-api-key", "ANTHROPIC_API_KEY", "sk-ant-api03-{w:93}AA"),
	tmpl("huggingface-token", "HF_TOKEN", "hf_{L:34}"),
	tmpl("cohere-api-key", "COHERE_API_KEY", "{a:40}"),
	tmpl("groq-api-key", "GROQ_API_KEY", "gsk_{a:52}"),
	tmpl("replicate-api-token", "REPLICATE_API_TOKEN", "r8_{a:37}"),
	tmpl("mistral-api-key", "MISTRAL_API_KEY", "{a:32}"),
	tmpl("perplexity-api-key", "PPLX", "pplx-{a:48}"),
	tmpl("xai-api-key", "XAI", "xai-{a:80}"),
	tmpl("deepseek-api-key", "DEEPSEEK_API_KEY", "sk-{h:32}"),
	tmpl("langsmith-api-key", "LANGSMITH", "lsv2_pt_{h:32}_{h:10}"),
	{rule: "private-key", name: "key", gen: func(r *rand.Rand) (string, string) {
		labels := []string{"RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY"}
		body, block := pemBlock(r, labels[r.IntN(len(labels))], 120+r.IntN(1100))
		return body, block
	}},
	{rule: "pgp-private-key", name: "signing_key", gen: func(r *rand.Rand) (string, string) {
		body, block := pemBlock(r, "PGP PRIVATE KEY BLOCK", 600)
		block = strings.Replace(block, "-----\n", "-----\nVersion: GnuPG v2\n\n", 1)
		return body, block
	}},
	tmpl("age-secret-key", "AGE_KEY", "AGE-SECRET-KEY-1{age:58}"),
	{rule: "jwt", name: "id_token", gen: func(r *rand.Rand) (string, string) { s := jwt(r); return s, s }},
	inside("kubeconfig-client-key", "kubeconfig", "users:\n- name: admin\n  user:\n    client-key-data: @@\n", "{b:200}=="),
	inside("kubernetes-secret-literal", "cmd", "kubectl create secret generic db --from-literal=password=@@ -n agents", "{a:20}"),
	inside("postgres-url-password", "DATABASE_URL", "postgres://app:@@@db.internal:5432/app?sslmode=require", "{pw:18}"),
	inside("mysql-url-password", "MYSQL_URL", "mysql://root:@@@10.0.0.5:3306/shop", "{pw:18}"),
	inside("mongodb-url-password", "MONGO_URI", "mongodb+srv://svc:@@@cluster0.ab1cd.mongodb.net/app?retryWrites=true", "{pw:18}"),
	inside("redis-url-password", "REDIS_URL", "redis://:@@@cache.internal:6379/0", "{pw:18}"),
	inside("amqp-url-password", "AMQP_URL", "amqps://worker:@@@mq.internal:5671/vhost", "{pw:18}"),
	inside("sql-password", "migration", "ALTER ROLE app WITH LOGIN PASSWORD '@@';", "{pw:18}"),
	tmpl("npm-token", "NPM_TOKEN", "npm_{a:36}"),
	tmpl("pypi-token", "PYPI_TOKEN", "pypi-AgEIcHlwaS5vcmc{w:70}"),
	tmpl("nuget-api-key", "NUGET_KEY", "oy2{l:43}"),
	tmpl("rubygems-api-key", "GEM_HOST_API_KEY", "rubygems_{h:48}"),
	tmpl("dockerhub-token", "DOCKERHUB", "dckr_pat_{w:27}"),
	tmpl("jfrog-api-key", "ARTIFACTORY", "AKCp{a:69}"),
	tmpl("twilio-api-key", "TWILIO_KEY_SID", "SK{h:32}"),
	tmpl("twilio-auth-token", "TWILIO_AUTH_TOKEN", "{h:32}"),
	tmpl("sendgrid-api-key", "SENDGRID", "SG.{w:22}.{w:43}"),
	tmpl("mailgun-api-key", "MG", "key-{h:32}"),
	tmpl("mailgun-private-key", "MAILGUN_API_KEY", "{h:32}-{h:8}-{h:8}"),
	tmpl("mailchimp-api-key", "MC", "{h:32}-us{d:2}"),
	tmpl("atlassian-api-token", "JIRA", "ATATT3{w:186}"),
	tmpl("datadog-api-key", "DD_API_KEY", "{h:32}"),
	tmpl("newrelic-user-api-key", "NR", "NRAK-{U:27}"),
	tmpl("newrelic-insert-key", "NR_INSERT", "NRII-{w:32}"),
	tmpl("newrelic-license-key", "NR_LICENSE", "{h:36}NRAL"),
	tmpl("sentry-token", "SENTRY", "sntrys_{w:80}"),
	tmpl("doppler-token", "DOPPLER", "dp.pt.{a:43}"),
	tmpl("vault-token", "VAULT", "hvs.{w:90}"),
	tmpl("terraform-cloud-token", "TFC", "{a:14}.atlasv1.{w:67}"),
	tmpl("databricks-token", "DATABRICKS", "dapi{h:32}"),
	tmpl("linear-api-key", "LINEAR", "lin_api_{a:40}"),
	tmpl("notion-token", "NOTION", "ntn_{d:11}{a:35}"),
	tmpl("notion-token", "NOTION_LEGACY", "secret_{a:43}"),
	tmpl("postman-api-key", "POSTMAN", "PMAK-{h:24}-{h:34}"),
	tmpl("grafana-service-account-token", "GRAFANA", "glsa_{a:32}_{h:8}"),
	tmpl("grafana-cloud-token", "GRAFANA_CLOUD", "glc_{a:120}"),
	tmpl("onepassword-service-account-token", "OP_SERVICE_ACCOUNT", "ops_eyJ{w:200}"),
	tmpl("onepassword-secret-key", "OP_KEY", "A3-{U:6}-{U:11}-{U:5}-{U:5}-{U:5}"),
	tmpl("pulumi-access-token", "PULUMI", "pul-{h:40}"),
	tmpl("planetscale-token", "PSCALE", "pscale_tkn_{w:43}"),
	tmpl("supabase-token", "SUPABASE", "sbp_{h:40}"),
	tmpl("flyio-token", "FLY", "fo1_{w:43}"),
	tmpl("okta-api-token", "OKTA_API_TOKEN", "00{w:40}"),
	tmpl("shopify-token", "SHOPIFY", "shpat_{h:32}"),
	tmpl("airtable-pat", "AIRTABLE", "pat{a:14}.{h:64}"),
	{rule: "generic-secret", name: "DB_PASSWORD", noProse: true, gen: func(r *rand.Rand) (string, string) { s := fill(r, "{pw:20}"); return s, s }},
	{rule: "generic-secret", name: "client_secret", noProse: true, gen: func(r *rand.Rand) (string, string) { s := fill(r, "{a:32}"); return s, s }},
	inside("http-authorization", "header", "Authorization: Basic @@", "{b:40}="),
	inside("bearer-token", "auth", "Bearer @@", "{w:48}"),
	inside("url-credentials", "MIRROR", "ftp://deploy:@@@files.internal/pub", "{pw:18}"),
	tmpl("pii-email", "contact", "{l:10}.{l:6}@corp-{l:5}.com"),
	{rule: "pii-card-number", name: "card", gen: func(r *rand.Rand) (string, string) { s := card(r); return s, s }},
}

// card returns a 16-digit number that passes the Luhn check.
func card(r *rand.Rand) string {
	d := []byte("4" + fill(r, "{d:14}"))
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if (len(d)-i)%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return string(d) + string(byte('0'+(10-sum%10)%10))
}
