# frozen_string_literal: true

module Acme
  class Vault
    TRACER = OpenTelemetry.tracer_provider.tracer("vault")

    def initialize(repository)
      @repository = repository
    end

    def deposit(account, cents)
      TRACER.in_span("Vault#deposit") do |span|
        span.set_attribute("vault.cents", cents)
        @repository.add(account, cents)
      end
    end

    def balances(accounts)
      accounts.map { |a| @repository.balance(a) }
    end

    def self.open(name)
      puts "opening #{name}"
      new(Repository.new)
    end
  end
end
