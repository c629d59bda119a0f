package policy

import (
	"errors"
	"fmt"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
)

// CostLimit is the most CEL cost units one rule's evaluation may spend; an
// evaluation over it fails (and so fails closed, see Decide). A comparison
// of two fields costs a few units; the limit leaves room for string
// functions over long URLs and SQL statements.
//
// Cost tracking at run time is slow (it watches every step), so it is
// only enabled for rules whose worst case, estimated at compile time with
// fields up to estimateFieldSize long, could exceed the limit: in practice
// rules with comprehensions (all, exists, map, filter).
const CostLimit = 100_000

// estimateFieldSize is the size (characters, entries) assumed for request
// and identity fields when estimating a rule's cost.
const estimateFieldSize = 64 << 10

// errNotBool is wrapped when a match expression does not yield a bool.
var errNotBool = errors.New("match must be a bool expression")

var (
	envOnce sync.Once
	envVal  *cel.Env
	envErr  error
)

// env returns the one CEL environment every rule compiles in. It is
// immutable and safe for concurrent use.
func env() (*cel.Env, error) {
	envOnce.Do(func() {
		opts := []cel.EnvOption{
			cel.Variable("request", cel.ObjectType(typeRequest)),
			cel.Variable("identity", cel.ObjectType(typeIdentity)),
			ext.Strings(),
			cel.OptionalTypes(),
			cel.CrossTypeNumericComparisons(true),
		}
		for _, t := range objTypes() {
			opts = append(opts, cel.Types(t))
		}
		envVal, envErr = cel.NewEnv(opts...)
		if envErr != nil {
			envErr = fmt.Errorf("cel environment: %w", envErr)
		}
	})
	return envVal, envErr
}

// compileMatch type-checks a match expression and plans it.
func compileMatch(expr string) (cel.Program, error) {
	c, err := compileMatchTracked(expr)
	return c.prg, err
}

// compiledMatch is a planned match expression with its guards.
type compiledMatch struct {
	prg cel.Program
	// tracked says whether the program tracks its cost at run time.
	tracked bool
	guards  []*guard
	// exact says the guards are the whole expression: a request that
	// passes them matches, and the program need not run.
	exact bool
	// lits are the expression's string literals (see Set.lits).
	lits []string
}

// compileMatchTracked is compileMatch that also says whether the program
// tracks its cost at run time, and finds the expression's guards.
func compileMatchTracked(expr string) (compiledMatch, error) {
	e, err := env()
	if err != nil {
		return compiledMatch{}, err
	}
	ast, iss := e.Compile(expr)
	if iss.Err() != nil {
		return compiledMatch{}, iss.Err()
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return compiledMatch{}, fmt.Errorf("%w, not %s", errNotBool, ast.OutputType())
	}
	guards, exact := guardsOf(ast.NativeRep().Expr())
	lits := stringLits(ast.NativeRep())
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	tracked := false
	if est, err := e.EstimateCost(ast, sizeEstimator{}); err != nil || est.Max > CostLimit {
		opts = append(opts, cel.CostLimit(CostLimit))
		tracked = true
	}
	prg, err := e.Program(ast, opts...)
	if err != nil {
		return compiledMatch{}, err
	}
	return compiledMatch{prg: prg, tracked: tracked, guards: guards, exact: exact, lits: lits}, nil
}

// stringLits lists the string literals of a checked expression.
func stringLits(a *celast.AST) []string {
	var out []string
	for _, e := range celast.MatchDescendants(celast.NavigateAST(a), celast.KindMatcher(celast.LiteralKind)) {
		if s, ok := e.AsLiteral().(types.String); ok {
			out = append(out, string(s))
		}
	}
	return out
}

// sizeEstimator bounds the size of every request and identity field for
// the compile-time cost estimate.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: estimateFieldSize}
}

func (sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// CheckExpression reports whether expr would compile as a rule's match, for
// editors and admission checks; the error is CEL's message.
func CheckExpression(expr string) error {
	_, err := compileMatch(expr)
	return err
}
