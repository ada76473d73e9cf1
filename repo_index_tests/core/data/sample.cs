using System;
using System.Collections.Generic;

namespace Shop.Orders
{
    public class Order
    {
        private readonly List<decimal> _lines = new();

        public Order(string customer)
        {
            Customer = customer;
        }

        public string Customer { get; }

        public void AddLine(decimal price)
        {
            if (price < 0) throw new ArgumentException("negative price");
            _lines.Add(price);
        }

        public decimal Total()
        {
            decimal sum = 0;
            foreach (var p in _lines) sum += p;
            return sum;
        }
    }

    public interface IOrderStore
    {
        void Save(Order order);
    }

    public enum Status { Open, Paid }
}
