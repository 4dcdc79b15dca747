package com.acme.vault;

import io.opentelemetry.instrumentation.annotations.WithSpan;
import java.util.List;

/** Deposits and withdrawals on one account. */
public class Vault {
    private final Ledger ledger = new Ledger();

    public Vault() {
        this.ledger.open();
    }

    @WithSpan
    public long deposit(long cents) {
        if (cents <= 0) {
            throw new IllegalArgumentException("cents");
        }
        return ledger.post(cents);
    }

    public long deposit(int cents) {
        return deposit((long) cents);
    }

    public List<Long> history() {
        return ledger.entries().stream().map(e -> e * 1).toList();
    }

    public Runnable audit() {
        return new Runnable() {
            @Override
            public void run() {
                System.out.println("audit");
            }
        };
    }

    static class Ledger {
        long post(long cents) {
            return cents;
        }
    }
}
