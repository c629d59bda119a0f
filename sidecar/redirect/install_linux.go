package redirect

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Install validates cfg and programs its plan into the calling thread's
// network namespace. An existing chaperone table is replaced in the same
// netlink batch, so the rules are never missing or doubled in between.
// It needs CAP_NET_ADMIN in the namespace.
func Install(ctx context.Context, cfg Config) (RuleSet, error) {
	if err := cfg.Validate(); err != nil {
		return RuleSet{}, err
	}
	if err := ctx.Err(); err != nil {
		return RuleSet{}, err
	}
	rs := Plan(cfg)

	conn, err := nftables.New()
	if err != nil {
		return RuleSet{}, fmt.Errorf("redirect: open netlink: %w", err)
	}
	table := &nftables.Table{Name: rs.Table, Family: nftables.TableFamilyINet}
	// Add (a no-op when it exists) then delete makes the delete safe on a
	// fresh namespace; the kernel applies the whole batch or none of it.
	conn.AddTable(table)
	conn.DelTable(table)
	conn.AddTable(table)
	policy := nftables.ChainPolicyAccept
	chain := conn.AddChain(&nftables.Chain{
		Name:     rs.Chain,
		Table:    table,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookOutput,
		Priority: nftables.ChainPriorityRef(nftables.ChainPriority(rs.Priority)),
		Policy:   &policy,
	})
	for _, r := range rs.Rules {
		conn.AddRule(&nftables.Rule{
			Table:    table,
			Chain:    chain,
			Exprs:    ruleExprs(r),
			UserData: userdata.AppendString(nil, userdata.TypeComment, r.Comment),
		})
	}
	if err := conn.Flush(); err != nil {
		return RuleSet{}, netlinkError("install rules", err)
	}
	return rs, nil
}

// Uninstall removes the chaperone table and all its rules from the calling
// thread's network namespace. Removing an absent table is not an error.
func Uninstall(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("redirect: open netlink: %w", err)
	}
	conn.DelTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet})
	if err := conn.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return netlinkError("remove rules", err)
	}
	return nil
}

// Installed reports whether the chaperone table exists in the calling
// thread's network namespace.
func Installed(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	conn, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("redirect: open netlink: %w", err)
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, netlinkError("list tables", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			return true, nil
		}
	}
	return false, nil
}

// netlinkError turns the kernel's answers into messages an operator can act on.
func netlinkError(op string, err error) error {
	switch {
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("redirect: %s: CAP_NET_ADMIN is required in the pod's network namespace: %w", op, err)
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOENT) && op == "install rules":
		return fmt.Errorf("redirect: %s: kernel lacks nftables nat support for the inet family (Linux 5.2+ with nf_tables, nft_nat, nft_redir): %w", op, err)
	default:
		return fmt.Errorf("redirect: %s: %w", op, err)
	}
}

// reg is the register every rule loads its data into.
const reg = 1

// ruleExprs compiles one rule into nftables expressions, in the same shape
// nft(8) would produce for the rendered text.
func ruleExprs(r Rule) []expr.Any {
	var es []expr.Any
	cmp := func(data []byte) {
		es = append(es, &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data})
	}
	meta := func(key expr.MetaKey) {
		es = append(es, &expr.Meta{Key: key, Register: reg})
	}

	if r.Family != AnyFamily {
		meta(expr.MetaKeyNFPROTO)
		cmp([]byte{nfproto(r.Family == IPv6)})
	}
	if r.OIFName != "" {
		meta(expr.MetaKeyOIFNAME)
		cmp(ifname(r.OIFName))
	}
	if r.Daddr.IsValid() {
		p := r.Daddr.Masked()
		is6 := p.Addr().Is6()
		meta(expr.MetaKeyNFPROTO)
		cmp([]byte{nfproto(is6)})
		offset, size := uint32(16), uint32(4) // IPv4 header: daddr
		if is6 {
			offset, size = 24, 16 // IPv6 header: daddr
		}
		es = append(es, &expr.Payload{
			DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size,
		})
		if p.Bits() < p.Addr().BitLen() {
			es = append(es, &expr.Bitwise{
				SourceRegister: reg, DestRegister: reg, Len: size,
				Mask: prefixMask(p.Bits(), int(size)), Xor: make([]byte, size),
			})
		}
		cmp(p.Addr().AsSlice())
	}
	if r.SkUID != nil {
		meta(expr.MetaKeySKUID)
		cmp(binaryutil.NativeEndian.PutUint32(*r.SkUID))
	}
	if r.SkGID != nil {
		meta(expr.MetaKeySKGID)
		cmp(binaryutil.NativeEndian.PutUint32(*r.SkGID))
	}
	if r.TCP || r.TCPDport != 0 {
		meta(expr.MetaKeyL4PROTO)
		cmp([]byte{unix.IPPROTO_TCP})
	}
	if r.TCPDport != 0 {
		es = append(es, &expr.Payload{
			DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2,
		})
		cmp(binaryutil.BigEndian.PutUint16(r.TCPDport))
	}
	switch r.Verdict {
	case Redirect:
		es = append(es,
			&expr.Immediate{Register: reg, Data: binaryutil.BigEndian.PutUint16(r.RedirectPort)},
			// Spelled out as the kernel reports it back, so a read-back
			// compares equal.
			&expr.Redir{RegisterProtoMin: reg, RegisterProtoMax: reg, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
		)
	default:
		es = append(es, &expr.Verdict{Kind: expr.VerdictReturn})
	}
	return es
}

func nfproto(is6 bool) byte {
	if is6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

// ifname pads an interface name to IFNAMSIZ as the kernel compares it.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func prefixMask(bits, size int) []byte {
	m := make([]byte, size)
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return m
}
