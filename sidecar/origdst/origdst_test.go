package origdst

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func sockaddr4(ap netip.AddrPort) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint16(b, afInet)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	a := ap.Addr().As4()
	copy(b[4:], a[:])
	return b
}

func sockaddr6(ap netip.AddrPort, scope uint32) []byte {
	b := make([]byte, 28)
	binary.NativeEndian.PutUint16(b, afInet6)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	a := ap.Addr().As16()
	copy(b[8:], a[:])
	binary.NativeEndian.PutUint32(b[24:], scope)
	return b
}

func TestParseSockaddr(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    string
		wantErr bool
	}{
		{"ipv4", sockaddr4(netip.MustParseAddrPort("192.0.2.7:443")), "192.0.2.7:443", false},
		{"ipv6", sockaddr6(netip.MustParseAddrPort("[2001:db8::1]:8080"), 0), "[2001:db8::1]:8080", false},
		{"ipv6 link-local scope", sockaddr6(netip.MustParseAddrPort("[fe80::1]:22"), 3), "[fe80::1%3]:22", false},
		{"short", []byte{2}, "", true},
		{"short ipv4", sockaddr4(netip.MustParseAddrPort("192.0.2.7:443"))[:6], "", true},
		{"short ipv6", sockaddr6(netip.MustParseAddrPort("[::1]:1"), 0)[:20], "", true},
		{"unknown family", []byte{0xff, 0xff, 0, 0, 0, 0, 0, 0}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSockaddr(tt.in, binary.NativeEndian)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseSockaddr() error = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && got.String() != tt.want {
				t.Fatalf("parseSockaddr() = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzParseSockaddr(f *testing.F) {
	f.Add(sockaddr4(netip.MustParseAddrPort("10.0.0.1:80")))
	f.Add(sockaddr6(netip.MustParseAddrPort("[fd00::1]:443"), 0))
	f.Add(sockaddr6(netip.MustParseAddrPort("[fe80::1]:443"), 7))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, err := parseSockaddr(b, binary.NativeEndian)
		if err != nil {
			return
		}
		if !ap.IsValid() {
			t.Fatalf("valid parse produced invalid address from %x", b)
		}
		// Re-encoding must reproduce the address and port.
		var again []byte
		if ap.Addr().Is4() {
			again = sockaddr4(ap)
		} else {
			again = sockaddr6(ap, binary.NativeEndian.Uint32(b[24:28]))
		}
		ap2, err := parseSockaddr(again, binary.NativeEndian)
		if err != nil || ap2 != ap {
			t.Fatalf("round trip %v -> %v (%v)", ap, ap2, err)
		}
	})
}
