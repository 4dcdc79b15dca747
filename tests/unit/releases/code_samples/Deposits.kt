package com.acme.vault

import io.opentelemetry.api.GlobalOpenTelemetry
import io.opentelemetry.instrumentation.annotations.WithSpan

private val tracer = GlobalOpenTelemetry.getTracer("vault")

class DepositService(private val repository: Repository) {

    @WithSpan
    fun deposit(account: String, cents: Long): Long {
        require(cents > 0) { "cents must be positive" }
        return repository.add(account, cents)
    }

    fun refund(account: String, cents: Long): Long {
        val span = tracer.spanBuilder("refund").startSpan()
        try {
            return repository.add(account, -cents)
        } finally {
            span.end()
        }
    }

    fun balances(accounts: List<String>): Map<String, Long> =
        accounts.associateWith { repository.balance(it) }

    companion object {
        fun create(): DepositService = DepositService(Repository())
    }
}

fun openVault(name: String): DepositService {
    println("opening $name")
    return DepositService.create()
}
