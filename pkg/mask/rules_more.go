package mask

func keyRules() []Rule {
	const body = `(?P<secret>(?:\s|\\{1,4}[nr])*(?:[A-Za-z][A-Za-z\-]*: [^\r\n\\]*(?:\s|\\{1,4}[nr])+)*[A-Za-z0-9+/=](?:[A-Za-z0-9+/=]|\s|\\{1,4}[nr])*)`
	return []Rule{
		{ID: "private-key", Description: "PEM private key (PKCS#1 RSA, EC, DSA, OpenSSH, PKCS#8, encrypted PKCS#8)",
			Regexp:   `-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----` + body,
			Keywords: []string{"-----begin"}, MaxLen: 16384, Entropy: 4},
		{ID: "pgp-private-key", Description: "ASCII-armoured PGP private key block",
			Regexp:   `-----BEGIN PGP PRIVATE KEY BLOCK-----` + body,
			Keywords: []string{"-----begin"}, MaxLen: 65536, Entropy: 4},
		token("age-secret-key", "age encryption secret key", `AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}`, "age-secret-key-1"),
		{ID: "jwt", Description: "JSON Web Token (including Kubernetes service-account tokens)",
			Regexp:   `eyJ[A-Za-z0-9_\-]{8,}={0,2}\.eyJ[A-Za-z0-9_\-]{8,}={0,2}\.[A-Za-z0-9_\-]*`,
			Keywords: []string{"eyj"}, MaxLen: 16384, WordEnd: true, Validate: validJWT},
		{ID: "kubeconfig-client-key", Description: "client key data of a kubeconfig",
			Regexp:   `client-key-data["']?\s*:\s*["']?(?P<secret>[A-Za-z0-9+/=]{40,})`,
			Keywords: []string{"client-key-data"}, MaxLen: 16384},
		{ID: "kubernetes-secret-literal", Description: "value given to kubectl create secret --from-literal",
			Regexp:   `--from-literal[= ]['"]?[^=\s'"]+=(?P<secret>'[^']*'|"[^"]*"|[^\s'"]+)`,
			Keywords: []string{"--from-literal"}},
	}
}

// dbURL is a connection URL of one of schemes with a password.
func dbURL(id, desc, schemes string, keywords ...string) Rule {
	return Rule{ID: id, Description: desc,
		Regexp:   `(?i:` + schemes + `)://[^:/?#\s@"'<>]*:(?P<secret>[^@/?#\s"'<>]+)@`,
		Keywords: keywords, Validate: notTemplate, Quick: userinfoAfter}
}

func dbRules() []Rule {
	return []Rule{
		dbURL("postgres-url-password", "password in a PostgreSQL connection URL", `postgres(?:ql)?`, "postgres"),
		dbURL("mysql-url-password", "password in a MySQL or MariaDB connection URL", `mysqlx?|mariadb`, "mysql", "mariadb"),
		dbURL("mongodb-url-password", "password in a MongoDB connection URL", `mongodb(?:\+srv)?`, "mongodb"),
		dbURL("redis-url-password", "password in a Redis connection URL", `rediss?`, "redis"),
		dbURL("amqp-url-password", "password in an AMQP (RabbitMQ) connection URL", `amqps?`, "amqp"),
		{ID: "sql-password", Description: "password literal in SQL (PASSWORD '…', IDENTIFIED BY '…')",
			Regexp:   `(?i:password|identified\s+by)\s*=?\s*(?P<secret>'(?:[^'\\]|''|\\.){3,}')`,
			Keywords: []string{"password", "identified"}, Validate: notTemplate},
	}
}

func registryRules() []Rule {
	return []Rule{
		token("npm-token", "npm access token", `npm_[A-Za-z0-9]{36}`, "npm_"),
		token("pypi-token", "PyPI API token", `pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}`, "pypi-ageichlwas5vcmc"),
		{ID: "nuget-api-key", Description: "NuGet API key", Regexp: `oy2[a-z0-9]{43}`, Keywords: []string{"oy2"},
			WordStart: true, WordEnd: true, Entropy: 3.5},
		token("rubygems-api-key", "RubyGems API key", `rubygems_[a-f0-9]{48}`, "rubygems_"),
		token("dockerhub-token", "Docker Hub personal or organisation access token", `dckr_(?:pat|oat)_[A-Za-z0-9_\-]{27,}`, "dckr_pat_", "dckr_oat_"),
		{ID: "jfrog-api-key", Description: "JFrog Artifactory API key", Regexp: `AKCp[A-Za-z0-9]{69}`, Keywords: []string{"akcp"},
			WordStart: true, WordEnd: true},
	}
}

func saasRules() []Rule {
	return []Rule{
		{ID: "twilio-api-key", Description: "Twilio API key SID", Regexp: `SK[0-9a-fA-F]{32}`, Keywords: []string{"sk"},
			WordStart: true, WordEnd: true, Entropy: 3},
		nearby("twilio-auth-token", "Twilio auth token near \"twilio\"", `twilio`, `[a-f0-9]{32}`, "twilio"),
		token("sendgrid-api-key", "SendGrid API key", `SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}`, "sg."),
		token("mailgun-api-key", "Mailgun API key", `key-[0-9a-f]{32}`, "key-"),
		nearby("mailgun-private-key", "Mailgun private API key near \"mailgun\"", `mailgun`, `[0-9a-f]{32}-[0-9a-f]{8}-[0-9a-f]{8}`, "mailgun"),
		{ID: "mailchimp-api-key", Description: "Mailchimp API key", Regexp: `[0-9a-f]{32}-us[0-9]{1,2}`,
			Keywords: []string{"-us"}, Floating: true, MaxLen: 45, WordStart: true, WordEnd: true},
		token("atlassian-api-token", "Atlassian (Jira, Confluence) API token", `ATATT3[A-Za-z0-9_\-=]{180,}`, "atatt3"),
		nearby("datadog-api-key", "Datadog API or application key near \"datadog\"/\"dd_api_key\"",
			`datadog|dd[_\-]api[_\-]key|dd[_\-]app(?:lication)?[_\-]key`, `[a-f0-9]{32}(?:[a-f0-9]{8})?`,
			"datadog", "dd_api_key", "dd-api-key", "dd_app_key", "dd-app-key", "dd_application_key", "dd-application-key"),
		token("newrelic-user-api-key", "New Relic user API key", `NRAK-[A-Z0-9]{27}`, "nrak-"),
		token("newrelic-insert-key", "New Relic insights insert key", `NRII-[A-Za-z0-9_\-]{32}`, "nrii-"),
		{ID: "newrelic-license-key", Description: "New Relic ingest license key", Regexp: `[a-f0-9]{36}NRAL`,
			Keywords: []string{"nral"}, Floating: true, MaxLen: 45, WordStart: true, WordEnd: true},
		token("sentry-token", "Sentry organisation or user auth token", `sntry(?:s_[A-Za-z0-9+/=_\-]{60,}|u_[a-f0-9]{64})`, "sntrys_", "sntryu_"),
		token("doppler-token", "Doppler token", `dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}`,
			"dp.pt.", "dp.st.", "dp.sa.", "dp.ct.", "dp.scim.", "dp.audit."),
		token("vault-token", "HashiCorp Vault service, batch or recovery token", `hv[sbr]\.[A-Za-z0-9_\-]{24,}`, "hvs.", "hvb.", "hvr."),
		{ID: "terraform-cloud-token", Description: "Terraform Cloud / Enterprise API token",
			Regexp: `[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=\-]{60,70}`, Keywords: []string{".atlasv1."}, Floating: true, MaxLen: 100, WordStart: true, WordEnd: true},
		token("databricks-token", "Databricks personal access token", `dapi[a-f0-9]{32}(?:-\d)?`, "dapi"),
		token("linear-api-key", "Linear API key", `lin_api_[A-Za-z0-9]{40}`, "lin_api_"),
		token("notion-token", "Notion integration token", `(?:secret_[A-Za-z0-9]{43}|ntn_[0-9]{11}[A-Za-z0-9]{35})`, "secret_", "ntn_"),
		token("postman-api-key", "Postman API key", `PMAK-[a-f0-9]{24}-[a-f0-9]{34}`, "pmak-"),
		token("grafana-service-account-token", "Grafana service account token", `glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}`, "glsa_"),
		token("grafana-cloud-token", "Grafana Cloud access policy token", `glc_[A-Za-z0-9+/]{32,400}={0,2}`, "glc_"),
		token("onepassword-service-account-token", "1Password service account token", `ops_eyJ[A-Za-z0-9+/=_\-]{100,}`, "ops_eyj"),
		token("onepassword-secret-key", "1Password account secret key",
			`A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}`, "a3-"),
		token("pulumi-access-token", "Pulumi access token", `pul-[a-f0-9]{40}`, "pul-"),
		token("planetscale-token", "PlanetScale service token or password", `pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.\-]{32,64}`, "pscale_"),
		token("supabase-token", "Supabase personal access token", `sbp_[a-f0-9]{40}`, "sbp_"),
		token("flyio-token", "Fly.io access token", `fo1_[A-Za-z0-9_\-]{43}`, "fo1_"),
		nearby("okta-api-token", "Okta API token near \"okta\"", `okta`, `00[A-Za-z0-9_\-]{40}`, "okta"),
		token("shopify-token", "Shopify access, custom app, private app or shared secret token", `shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}`,
			"shpat_", "shpca_", "shppa_", "shpss_"),
		{ID: "airtable-pat", Description: "Airtable personal access token", Regexp: `pat[A-Za-z0-9]{14}\.[a-f0-9]{64}`,
			Keywords: []string{"pat"}, WordStart: true, WordEnd: true},
	}
}

// secretNames are the name fragments of the generic assignment rule.
const secretNames = `password|passwd|passphrase|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|client[_\-]?secret|credentials?|auth[_\-]?key`

func genericRules() []Rule {
	return []Rule{
		{ID: "generic-secret", Description: "value assigned to a secret-sounding name (key = value, \"key\": \"value\"), gated by entropy",
			Regexp: "(?P<key>(?i:" + secretNames + ")[\\w.\\-]{0,40})(?:\\\\?[\"'`])?\\s*(?:=>|:=|[:=])\\s*(?:\\\\?[\"'`])?" +
				// {6,} and the bound in genericValue, not {6,200}: a counted
				// repetition costs an instruction per count, and a program
				// past 500 instructions loses regexp's fast backtracker.
				"(?P<secret>[^\\s\"'`,;<>(){}\\[\\]\\\\]{6,})(?:[\\s\"'`,;<>)}\\]\\\\]|$)",
			Keywords: []string{"password", "passwd", "passphrase", "pwd", "secret", "token", "api_key", "apikey", "api-key",
				"access_key", "accesskey", "access-key", "private_key", "privatekey", "private-key", "client_secret",
				"clientsecret", "client-secret", "credential", "auth_key", "authkey", "auth-key"},
			Generic: true, Entropy: 2.75, Validate: genericValue, Quick: assignmentAfter},
		{ID: "http-authorization", Description: "credential of an HTTP Authorization header in text",
			Regexp:   `(?i:authorization)["']?\s*[:=]\s*["']?(?i:basic|bearer|token|digest|negotiate|aws4-hmac-sha256)?\s*(?P<secret>[A-Za-z0-9+/=._~\-,]{8,})`,
			Keywords: []string{"authorization"}, Generic: true, Validate: notTemplate},
		{ID: "bearer-token", Description: "bearer token in text", Regexp: `(?i:bearer)\s+(?P<secret>[A-Za-z0-9._~+/\-]{20,}=*)`,
			Keywords: []string{"bearer"}, Generic: true, Entropy: 3.5, Validate: notTemplate},
		{ID: "url-credentials", Description: "password in a URL of any scheme",
			Regexp:   `://[^:/?#\s@"'<>]+:(?P<secret>[^@/?#\s"'<>]{3,})@`,
			Keywords: []string{"://"}, Generic: true, Validate: notTemplate, Quick: userinfoAfter},
	}
}

func piiRules() []Rule {
	return []Rule{
		{ID: "pii-email", Description: "email address", Regexp: `[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}`,
			Keywords: []string{"@"}, Floating: true, MaxLen: 320, PII: true, WordEnd: true},
		{ID: "pii-card-number", Description: "payment card number (Luhn-checked)", Regexp: `[0-9](?:[ \-]?[0-9]){12,18}`,
			PII: true, WordStart: true, WordEnd: true, Validate: luhn},
	}
}
