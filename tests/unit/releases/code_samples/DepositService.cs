using System.Diagnostics;

namespace Acme.Vault.Deposits;

public class DepositService
{
    private static readonly ActivitySource Source = new("Acme.Vault");
    private readonly IRepository _repository;

    public DepositService(IRepository repository)
    {
        _repository = repository;
    }

    public long Deposit(string account, long cents)
    {
        using var activity = Source.StartActivity("Deposit");
        activity?.SetTag("vault.cents", cents);
        return _repository.Add(account, cents);
    }

    public long Deposit(string account, int cents) => Deposit(account, (long)cents);

    public IEnumerable<long> Balances(IEnumerable<string> accounts)
    {
        long Lookup(string a) => _repository.Balance(a);
        return accounts.Select(a => Lookup(a));
    }

    public class Audit
    {
        public void Record(string message)
        {
            Console.WriteLine(message);
        }
    }
}
