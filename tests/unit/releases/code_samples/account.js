import { trace } from "@opentelemetry/api";

const tracer = trace.getTracer("vault");

export class Account {
  constructor(id) {
    this.id = id;
    this.cents = 0;
  }

  deposit(cents) {
    return tracer.startActiveSpan("Account.deposit", (span) => {
      this.cents += cents;
      span.end();
      return this.cents;
    });
  }

  balance() {
    return this.cents;
  }
}

export const format = (cents) => {
  const euros = cents / 100;
  return `${euros.toFixed(2)} EUR`;
};

export function total(accounts) {
  return accounts.reduce((sum, a) => sum + a.balance(), 0);
}

export const handlers = {
  async show(req, res) {
    res.json({ balance: 1 });
  },
};
