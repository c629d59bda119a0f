package api

import _ "embed"

// openAPIDoc is the OpenAPI 3.1 description of every route, served on
// /openapi.json. A test keeps it in step with the registered routes.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns a copy of the API's OpenAPI 3.1 document.
func OpenAPI() []byte {
	return append([]byte(nil), openAPIDoc...)
}
