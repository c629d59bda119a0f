package mask

// Builtin returns the built-in rules, written from the vendors' published
// token formats. Each call returns a fresh slice the caller may change.
func Builtin() []Rule {
	var rs []Rule
	for _, group := range [][]Rule{cloudRules(), vcsRules(), chatRules(), paymentRules(), llmRules(),
		keyRules(), dbRules(), registryRules(), saasRules(), genericRules(), piiRules()} {
		rs = append(rs, group...)
	}
	return rs
}

// sep is what stands between a name and its value: "=", ":", ":=", "=>",
// whitespace or " is ", with optional quotes.
const sep = "(?:\\\\?[\"'`])?\\s*(?:=>|:=|[:=]|\\s)\\s*(?:is\\s+)?(?:\\\\?[\"'`])?"

// named builds an expression for a secret that is only recognisable by a
// name near it: one of names, up to 40 name characters, a separator, then
// the secret.
func named(names, secret string) string {
	return `(?i:` + names + `)[\w.\- ]{0,40}?` + sep + `(?P<secret>` + secret + `)`
}

// token is a self-identifying token: a literal prefix the keyword comes
// from, not followed by more letters or digits.
func token(id, desc, re string, keywords ...string) Rule {
	return Rule{ID: id, Description: desc, Regexp: re, Keywords: keywords, WordEnd: true, Entropy: 3, Validate: notTemplate}
}

// nearby is a secret recognised by a name: names in the expression and
// in keywords, which are also the names.
func nearby(id, desc, names, secret string, keywords ...string) Rule {
	return Rule{ID: id, Description: desc, Regexp: named(names, secret), Keywords: keywords,
		WordEnd: true, Entropy: 3, Validate: notTemplate}
}

func cloudRules() []Rule {
	return []Rule{
		{ID: "aws-access-key-id", Description: "AWS access key id",
			Regexp: `(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16}`, Keywords: []string{"akia", "asia", "abia", "acca", "a3t"},
			WordStart: true, WordEnd: true, Entropy: 2.5},
		nearby("aws-secret-access-key", "AWS secret access key near \"aws\"", `aws`, `[A-Za-z0-9/+]{40}`, "aws"),
		token("aws-session-token", "AWS session token", named(`aws_?session_?token|x-amz-security-token`, `[A-Za-z0-9/+=]{100,}`), "aws", "x-amz-security-token"),
		token("gcp-api-key", "Google API key (GCP, Gemini, Firebase)", `AIza[0-9A-Za-z_\-]{35}`, "aiza"),
		{ID: "gcp-service-account-key", Description: "private key of a GCP service-account JSON key file",
			Regexp: `"private_key"\s*:\s*"(-----BEGIN[^"]{60,})"`, Keywords: []string{`"private_key"`}, MaxLen: 8192},
		{ID: "gcp-private-key-id", Description: "private_key_id of a GCP service-account JSON key file",
			Regexp: `"private_key_id"\s*:\s*"([0-9a-f]{40})"`, Keywords: []string{`"private_key_id"`}},
		token("gcp-oauth-client-secret", "Google OAuth client secret", `GOCSPX-[A-Za-z0-9_\-]{28}`, "gocspx-"),
		token("google-oauth-access-token", "Google OAuth access token", `ya29\.[0-9A-Za-z_\-]{30,}`, "ya29."),
		{ID: "azure-storage-account-key", Description: "Azure storage account key",
			Regexp:   `(?i:accountkey\s*=\s*|azure[\w.\- ]{0,40}?key[\w.\- ]{0,40}?` + sep + `)(?P<secret>[A-Za-z0-9+/]{86}==)`,
			Keywords: []string{"accountkey", "azure"}, Entropy: 4},
		{ID: "azure-client-secret", Description: "Azure AD (Entra ID) application client secret",
			Regexp:   `[A-Za-z0-9_~.\-]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34}`,
			Keywords: []string{"q~"}, Floating: true, MaxLen: 50, WordStart: true, WordEnd: true, Entropy: 3.5},
		{ID: "azure-sas-token", Description: "signature of an Azure shared access signature",
			Regexp:   `sv=\d{4}-\d\d-\d\d[^\s"'<>]{0,300}?(?:[?&]|\\u0026)sig=(?P<secret>[A-Za-z0-9%+/]{30,}(?:%3D|=){0,2})`,
			Keywords: []string{"sv="}, MaxLen: 600},
		token("digitalocean-token", "DigitalOcean personal access, OAuth or refresh token", `do[por]_v1_[a-f0-9]{64}`, "dop_v1_", "doo_v1_", "dor_v1_"),
		nearby("heroku-api-key", "Heroku API key near \"heroku\"", `heroku`, `[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`, "heroku"),
		token("heroku-api-key-v2", "Heroku API key (HRKU- format)", `HRKU-[A-Za-z0-9_\-]{60}`, "hrku-"),
		{ID: "alibaba-access-key-id", Description: "Alibaba Cloud AccessKey id", Regexp: `LTAI[A-Za-z0-9]{20}`,
			Keywords: []string{"ltai"}, WordStart: true, WordEnd: true},
	}
}

func vcsRules() []Rule {
	return []Rule{
		token("github-pat", "GitHub personal access token (classic)", `ghp_[A-Za-z0-9]{36}`, "ghp_"),
		token("github-oauth-token", "GitHub OAuth access token", `gho_[A-Za-z0-9]{36}`, "gho_"),
		token("github-user-token", "GitHub App user-to-server token", `ghu_[A-Za-z0-9]{36}`, "ghu_"),
		token("github-app-token", "GitHub App installation (server-to-server) token", `ghs_[A-Za-z0-9]{36}`, "ghs_"),
		token("github-refresh-token", "GitHub refresh token", `ghr_[A-Za-z0-9]{36,76}`, "ghr_"),
		token("github-fine-grained-pat", "GitHub fine-grained personal access token", `github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}`, "github_pat_"),
		token("gitlab-pat", "GitLab personal, project or group access token", `glpat-[A-Za-z0-9_\-.]{20,}`, "glpat-"),
		token("gitlab-deploy-token", "GitLab deploy token", `gldt-[A-Za-z0-9_\-]{20,}`, "gldt-"),
		token("gitlab-runner-token", "GitLab runner authentication token", `glrt-[A-Za-z0-9_\-.]{20,}`, "glrt-"),
		token("gitlab-trigger-token", "GitLab pipeline trigger token", `glptt-[a-f0-9]{40}`, "glptt-"),
		token("gitlab-token", "other GitLab tokens (feed, OAuth app, CI job, agent, SCIM, incoming mail)",
			`(?:glft|gloas|glcbt|glagent|glsoat|glimt|glffct)-[A-Za-z0-9_\-.]{20,}`,
			"glft-", "gloas-", "glcbt-", "glagent-", "glsoat-", "glimt-", "glffct-"),
		token("bitbucket-app-password", "Bitbucket / Atlassian app password", `ATBB[A-Za-z0-9_=.\-]{32,}`, "atbb"),
	}
}

func chatRules() []Rule {
	return []Rule{
		token("slack-bot-token", "Slack bot token", `xoxb-[0-9]{8,13}-[0-9]{8,13}(?:-[A-Za-z0-9]{20,32})+`, "xoxb-"),
		token("slack-user-token", "Slack user token", `xoxp-[0-9]{8,13}-[0-9]{8,13}-[0-9]{8,13}-[a-fA-F0-9]{28,34}`, "xoxp-"),
		token("slack-app-token", "Slack app-level token", `xapp-\d-[A-Z0-9]{9,12}-\d{10,13}-[a-fA-F0-9]{60,70}`, "xapp-"),
		token("slack-token", "other Slack tokens (legacy, workspace, configuration, refresh)", `xox[aoesr](?:\.xox[a-z])?-[0-9A-Za-z\-]{20,}`,
			"xoxa-", "xoxo-", "xoxe", "xoxs-", "xoxr-"),
		{ID: "slack-webhook-url", Description: "Slack incoming webhook or workflow trigger URL",
			Regexp:   `hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9+/_\-]{20,})`,
			Keywords: []string{"hooks.slack.com"}},
		{ID: "discord-webhook-url", Description: "Discord webhook URL",
			Regexp:   `discord(?:app)?\.com/api/webhooks/\d{5,30}/(?P<secret>[A-Za-z0-9_\-]{60,72})`,
			Keywords: []string{"discord.com/api/webhooks", "discordapp.com/api/webhooks"}},
		{ID: "discord-bot-token", Description: "Discord bot token near \"discord\"",
			Regexp:   `[MNO][A-Za-z0-9_\-]{23,27}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,40}`,
			Keywords: []string{"discord"}, Near: 200, MaxLen: 100, WordStart: true, WordEnd: true, Entropy: 4},
		{ID: "telegram-bot-token", Description: "Telegram Bot API token",
			Regexp:   `[0-9]{8,10}:AA[0-9A-Za-z_\-]{33}`,
			Keywords: []string{":aa"}, Floating: true, MaxLen: 60, WordStart: true, WordEnd: true},
		{ID: "microsoft-teams-webhook", Description: "Microsoft Teams incoming webhook URL",
			Regexp:   `webhook\.office\.com/webhookb2/(?P<secret>[A-Za-z0-9@\-]{36,}/IncomingWebhook/[a-f0-9]{32}/[a-f0-9\-]{36})`,
			Keywords: []string{"webhook.office.com"}},
	}
}

func paymentRules() []Rule {
	return []Rule{
		token("stripe-secret-key", "Stripe secret key", `sk_(?:live|test)_[0-9A-Za-z]{24,247}`, "sk_live_", "sk_test_"),
		token("stripe-restricted-key", "Stripe restricted key", `rk_(?:live|test)_[0-9A-Za-z]{24,247}`, "rk_live_", "rk_test_"),
		token("stripe-publishable-key", "Stripe publishable key (public, but ties traffic to an account)", `pk_live_[0-9A-Za-z]{24,247}`, "pk_live_"),
		token("stripe-webhook-secret", "Stripe webhook signing secret", `whsec_[A-Za-z0-9+/=]{32,}`, "whsec_"),
		token("square-access-token", "Square access token", `(?:EAAA|sq0atp-)[A-Za-z0-9_\-]{22,60}`, "eaaa", "sq0atp-"),
		token("square-oauth-secret", "Square OAuth application secret", `sq0csp-[A-Za-z0-9_\-]{43}`, "sq0csp-"),
		token("braintree-access-token", "PayPal Braintree access token", `access_token\$(?:production|sandbox)\$[0-9a-z]{16}\$[0-9a-f]{32}`, "access_token$"),
		nearby("paypal-client-secret", "PayPal REST client secret near \"paypal\"", `paypal`, `E[A-Za-z0-9_\-]{79}`, "paypal"),
	}
}

func llmRules() []Rule {
	return []Rule{
		token("openai-api-key", "OpenAI API key (project, service account, admin, legacy)",
			`sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,200}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|[A-Za-z0-9]{48})`, "sk-"),
		token("anthropic-api-key", "Anthropic API or admin key", `sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_\-]{80,120}`, "sk-ant-"),
		token("huggingface-token", "Hugging Face access token", `hf_[A-Za-z0-9]{34,40}`, "hf_"),
		nearby("cohere-api-key", "Cohere API key near \"cohere\"", `cohere|co_api`, `[A-Za-z0-9]{40}`, "cohere", "co_api"),
		token("groq-api-key", "Groq API key", `gsk_[A-Za-z0-9]{52}`, "gsk_"),
		token("replicate-api-token", "Replicate API token", `r8_[A-Za-z0-9]{37}`, "r8_"),
		nearby("mistral-api-key", "Mistral API key near \"mistral\"", `mistral`, `[A-Za-z0-9]{32}`, "mistral"),
		token("perplexity-api-key", "Perplexity API key", `pplx-[A-Za-z0-9]{48}`, "pplx-"),
		token("xai-api-key", "xAI API key", `xai-[A-Za-z0-9]{80}`, "xai-"),
		token("deepseek-api-key", "DeepSeek API key near \"deepseek\"", named(`deepseek`, `sk-[a-f0-9]{32}`), "deepseek"),
		token("langsmith-api-key", "LangSmith API key", `lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}`, "lsv2_"),
	}
}
