# frozen_string_literal: true

require "json"

module Billing
  class Invoice
    attr_reader :lines

    def initialize(customer)
      @customer = customer
      @lines = []
    end

    def add(description, amount)
      raise ArgumentError, "negative" if amount.negative?

      @lines << { description: description, amount: amount }
      self
    end

    def total
      @lines.sum { |l| l[:amount] }
    end

    def self.from_json(text)
      data = JSON.parse(text)
      new(data["customer"]).tap do |inv|
        data["lines"].each { |l| inv.add(l["description"], l["amount"]) }
      end
    end
  end
end
