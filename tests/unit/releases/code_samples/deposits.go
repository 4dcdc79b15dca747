// Package deposits moves money into accounts.
package deposits

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
)

var tracer = otel.Tracer("github.com/acme/vault/deposits")

// Account holds a balance in cents.
type Account struct {
	ID    string
	Cents int64
}

// Deposit adds cents to the account, in a span of its own.
func (a *Account) Deposit(ctx context.Context, cents int64) error {
	ctx, span := tracer.Start(ctx, "Account.Deposit")
	defer span.End()
	if cents <= 0 {
		return errors.New("cents must be positive")
	}
	a.Cents += cents
	return nil
}

// Balance reports the balance.
func (a Account) Balance() int64 {
	return a.Cents
}

// Sum adds up balances.
func Sum(accounts []Account) int64 {
	total := int64(0)
	each := func(a Account) {
		total += a.Balance()
	}
	for _, a := range accounts {
		each(a)
	}
	return total
}
